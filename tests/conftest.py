"""Fixtures and hooks for every test: the run's Milvus broker, the order of the tests
(and their pytest-xdist groups), and the measured outcomes in pytest's summary."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version

import pytest

from .helpers import Measure, forget_connections
from .servers import BROKER_ENV, Broker, base_config

_BROKER = pytest.StashKey[Broker]()
_MEASURED = "measured: "  # the prefix of a measured outcome's user property
#: The pytest-xdist group of the tests on a server config of their own (marked
#: ``own_server``): one worker runs them in turn on the run's second server (``--dist
#: loadgroup``, in collection order: ``_rank``), while the others share the first.
IN_TURN = "server_in_turn"


def pytest_configure(config: pytest.Config) -> None:
    """The run's first process (not a pytest-xdist worker) holds the Milvus broker
    (``tests/servers.py``); its workers inherit ``$FLUSHSYNC_SERVERS``. Each worker
    has a home of its own under Milvus Lite 2.x (``_lite_home``)."""
    if hasattr(config, "workerinput"):
        _lite_home(str(config.workerinput["workerid"]))
    if hasattr(config, "workerinput") or BROKER_ENV in os.environ:
        return
    broker = Broker(base_config())
    config.stash[_BROKER] = broker
    os.environ[BROKER_ENV] = broker.path


def _lite_home(worker: str) -> None:
    """Milvus Lite 2.x servers keep their mmap files in ``$HOME/.cache/milvus``, which
    each empties as it starts: two starting at once, on two workers, can leave one
    unable to create a collection ("Mmap manager has not been init", CI run 13). So
    under Lite 2.x each worker, and the processes it starts, get a home of their own
    (docs/milvus.md, "Milvus Lite 2.5 processes share a folder")."""
    try:
        lite = version("milvus-lite")
    except PackageNotFoundError:
        return
    if int(lite.split(".")[0]) < 3:
        home = tempfile.mkdtemp(prefix=f"flushsync-home-{worker}-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        os.environ["HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    broker = config.stash.get(_BROKER, None)
    if broker is not None:
        broker.close()
        del os.environ[BROKER_ENV]


def _in_turn(item: pytest.Item) -> bool:
    return item.get_closest_marker("own_server") is not None


def _rank(item: pytest.Item) -> int:
    """Those on a server config of their own first: one group (``IN_TURN``), the first
    unit of work, so one worker runs them from the start on the second server, each
    config's in a row (one restart each). On the default server, then: the tests sharing
    it, side by side on every other worker; those holding it alone (a FlushAll: side by
    side with each other only); those holding it by themselves, one after the other (in
    a row, so that the server changes hands between the kinds once, not at every test).
    Then the tests needing no server."""
    if item.get_closest_marker("own_server") is not None:
        return 0
    if item.get_closest_marker("exclusive") is not None:
        return 3
    if item.get_closest_marker("alone") is not None:
        return 2
    return 1 if item.get_closest_marker("server") is not None else 4


def _in_a_row(items: list[pytest.Item]) -> dict[str, int]:
    """Where each test on a config of its own runs: in file order, but those whose
    ``own_server`` marker names a config they share run in a row, where the first of
    them is (one start for them all)."""
    first: dict[str, int] = {}
    turn: dict[str, int] = {}
    for index, item in enumerate(items):
        marker = item.get_closest_marker("own_server")
        name = str(marker.args[0]) if marker is not None and marker.args else item.nodeid
        turn[item.nodeid] = first.setdefault(name, index)
    return turn


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _in_turn(item):
            item.add_marker(pytest.mark.xdist_group(IN_TURN))
    turn = _in_a_row(items)
    # stable: file order within each rank, but for the configs shared in a row
    items.sort(key=lambda item: (_rank(item), turn[item.nodeid] if _in_turn(item) else 0))


def pytest_collection_finish(session: pytest.Session) -> None:
    """On a pytest-xdist worker, the group holds: otherwise the tests on a server config
    of their own would each take a worker, and wait there, in turn."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    for item in session.items:
        if _in_turn(item) and not item.nodeid.endswith(f"@{IN_TURN}"):
            raise pytest.UsageError(f"pytest-xdist did not group {item.nodeid}")


@pytest.fixture(autouse=True)
def _no_stale_connections() -> Iterator[None]:
    """No test is handed a connection an earlier test left behind (``forget_connections``)."""
    yield
    forget_connections()


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Measure:
    """Record a measured outcome (seconds, rows) for the terminal summary (it travels
    with the test's report, from whichever worker ran it)."""

    def record(key: str, value: object) -> None:
        request.node.user_properties.append((_MEASURED + key, value))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [
        report
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", None) == "call"
    ]
    measured = [
        (report.nodeid, key.removeprefix(_MEASURED), value)
        for report in reports
        for key, value in report.user_properties
        if key.startswith(_MEASURED)
    ]
    if measured:
        terminalreporter.section("measured")
        for nodeid, key, value in measured:
            terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {key} = {value}")
