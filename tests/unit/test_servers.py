"""The broker that leases the run's Milvus servers (``tests/servers.py``), over a
stand-in for the server process: who shares it, who waits, when it restarts."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from .. import servers
from ..servers import Broker, Servers

#: Long enough for a lease that should wait to show it would not be granted.
NOT_GRANTED_WITHIN = 0.5
LIMITED = {"quotaAndLimits.flushRate.max": "0.1"}
OTHER = {"common.security.authorizationEnabled": "true"}


class FakeStandalone:
    """Stands in for a server process: records its starts and stops."""

    log: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def __init__(self, config: Mapping[str, str]) -> None:
        self.config = dict(config)
        self.port = 10_000 + len(self.log)
        self.log.append(("start", self.config))

    def stop(self) -> None:
        self.log.append(("stop", self.config))


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Servers]:
    FakeStandalone.log = []
    monkeypatch.setattr(servers, "Standalone", FakeStandalone)
    broker = Broker({})
    try:
        yield Servers(broker.path)
    finally:
        broker.close()


def _in_a_thread(
    servers: Servers, config: Mapping[str, str] | None, alone: bool, exclusive: bool = False
) -> tuple[threading.Event, threading.Event, list[int]]:
    """Ask for a lease in another thread: (granted, release it, the port it got)."""
    granted, release, port = threading.Event(), threading.Event(), []

    def hold() -> None:
        with servers.lease(config, alone=alone, exclusive=exclusive) as server:
            port.append(server.port)
            granted.set()
            release.wait(30)

    threading.Thread(target=hold, daemon=True).start()
    return granted, release, port


def test_leases_on_the_default_config_share_one_server(broker: Servers) -> None:
    with broker.lease() as one, broker.lease() as two:
        assert one.port == two.port
    assert FakeStandalone.log == [("start", {})]


def test_another_config_gets_a_server_of_its_own_beside_the_default_one(
    broker: Servers,
) -> None:
    with broker.lease() as default, broker.lease(LIMITED) as limited:
        assert default.port != limited.port
    assert FakeStandalone.log == [("start", {}), ("start", LIMITED)]


def test_a_third_config_waits_for_the_lease_on_the_second_server_then_restarts_it(
    broker: Servers,
) -> None:
    with broker.lease(), broker.lease(LIMITED):
        granted, release, _ = _in_a_thread(broker, OTHER, alone=False)
        assert not granted.wait(NOT_GRANTED_WITHIN)
    assert granted.wait(10)
    assert FakeStandalone.log == [
        ("start", {}),
        ("start", LIMITED),
        ("stop", LIMITED),
        ("start", OTHER),
    ]
    release.set()


def test_a_config_of_its_own_is_never_shared(broker: Servers) -> None:
    with broker.lease(LIMITED):
        granted, release, _ = _in_a_thread(broker, LIMITED, alone=False)
        assert not granted.wait(NOT_GRANTED_WITHIN)
    assert granted.wait(10)
    assert FakeStandalone.log == [("start", LIMITED)]  # the same server, in turn
    release.set()


def test_a_lease_alone_waits_for_the_shared_ones_and_stops_new_ones(broker: Servers) -> None:
    with broker.lease():
        alone, release_alone, _ = _in_a_thread(broker, None, alone=True)
        assert not alone.wait(NOT_GRANTED_WITHIN)
        shared, release_shared, _ = _in_a_thread(broker, None, alone=False)
        assert not shared.wait(NOT_GRANTED_WITHIN)  # it may not pass the lease alone
    assert alone.wait(10)
    assert not shared.wait(NOT_GRANTED_WITHIN)
    release_alone.set()
    assert shared.wait(10)
    release_shared.set()
    assert FakeStandalone.log == [("start", {})]  # alone, without a restart


def test_leases_alone_share_the_server_with_each_other(broker: Servers) -> None:
    with broker.lease(alone=True) as one, broker.lease(alone=True) as two:
        assert one.port == two.port
    assert FakeStandalone.log == [("start", {})]


def test_an_exclusive_lease_waits_for_the_others_and_holds_the_server_by_itself(
    broker: Servers,
) -> None:
    with broker.lease(alone=True):
        only, release_only, _ = _in_a_thread(broker, None, alone=False, exclusive=True)
        assert not only.wait(NOT_GRANTED_WITHIN)
        alone, release_alone, _ = _in_a_thread(broker, None, alone=True)
        assert not alone.wait(NOT_GRANTED_WITHIN)  # it may not pass the exclusive lease
    assert only.wait(10)
    other, release_other, _ = _in_a_thread(broker, None, alone=False, exclusive=True)
    assert not alone.wait(NOT_GRANTED_WITHIN) and not other.wait(NOT_GRANTED_WITHIN)
    release_only.set()
    assert alone.wait(10)  # it asked first
    release_alone.set()
    assert other.wait(10)
    release_other.set()
    assert FakeStandalone.log == [("start", {})]  # without a restart


def test_the_running_config_goes_first_while_it_is_wanted(broker: Servers) -> None:
    with broker.lease(LIMITED):
        other, release_other, _ = _in_a_thread(broker, OTHER, alone=False)
        assert not other.wait(NOT_GRANTED_WITHIN)
        again, release_again, _ = _in_a_thread(broker, LIMITED, alone=False)
        assert not again.wait(NOT_GRANTED_WITHIN)
    assert again.wait(10)  # though the other config asked first
    assert not other.wait(NOT_GRANTED_WITHIN)
    release_again.set()
    assert other.wait(10)
    release_other.set()
    assert FakeStandalone.log == [("start", LIMITED), ("stop", LIMITED), ("start", OTHER)]


def test_a_server_bound_to_one_index_node_must_have_added_no_other(tmp_path: Path) -> None:
    # 2.3.5's data coordinator may also add the embedded index node as it starts
    standalone = object.__new__(servers.Standalone)
    standalone.base_dir, standalone.config = str(tmp_path), dict(servers.CRASHABLE_UNBUILT)
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "milvus-stdout.log"
    added = '[datacoord/indexnode_manager.go:83] ["add IndexNode"] [nodeID={}] ["node address"=x]\n'
    log.write_text(added.format(9999))
    assert standalone._bound_alone()
    log.write_text(added.format(9999) + added.format(1))
    assert not standalone._bound_alone()
    standalone.config = {}  # not bound: nothing to check
    assert standalone._bound_alone()


class FakeWheel:
    """Stands in for the wheel's ``MilvusServer``: each start serves or dies, in turn."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes, self.base, self.roots = outcomes, "", list[int]()
        self.server_proc: SimpleNamespace | None = None
        self.config = SimpleNamespace(set=self._set)

    def _set(self, key: str, value: int) -> None:
        if key == "root_coord_port":
            self.roots.append(value)

    def set_base_dir(self, path: str) -> None:
        self.base = path
        Path(path, "logs").mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        serves = self.outcomes.pop(0) == "serves"
        line = servers.PROXY_HEALTHY if serves else "panic: listen tcp: address already in use"
        Path(self.base, "logs", "milvus-stdout.log").write_text(line + "\n")
        code = None if serves else -6
        self.server_proc = SimpleNamespace(poll=lambda: code, returncode=code)

    def wait_started(self, timeout: float) -> None:
        pass

    def stop(self) -> None:
        self.server_proc = None


def _standalone(tmp_path: Path, outcomes: list[str]) -> tuple[servers.Standalone, FakeWheel]:
    standalone = object.__new__(servers.Standalone)
    standalone.base_dir, standalone.config = str(tmp_path / "milvus"), {}
    standalone.server = wheel = FakeWheel(outcomes)
    standalone._etcd = standalone._placed()
    return standalone, wheel


def test_a_server_that_dies_as_it_starts_starts_again_on_new_quiet_ports(tmp_path: Path) -> None:
    # CI stop 35: the wheel waited 180 s on a server that had exited
    standalone, wheel = _standalone(tmp_path, ["dies", "serves"])
    etcd = Path(standalone._etcd).read_text()
    standalone._start(fresh=True)
    assert wheel.outcomes == []
    etcds = [
        {int(port) for port in re.findall(r":(\d+)", text)}
        for text in (etcd, Path(standalone._etcd).read_text())
    ]
    ports = [*wheel.roots, *etcds[0], *etcds[1]]
    assert len(ports) == 6 and len(set(ports)) == 6  # 2 starts: root coordinator, etcd x 2
    assert all(port in servers.QUIET and port not in servers.EPHEMERAL for port in ports)


def test_a_restart_keeps_its_ports_and_a_server_that_never_serves_says_why(
    tmp_path: Path,
) -> None:
    standalone, wheel = _standalone(tmp_path, ["dies", "serves"])
    etcd = Path(standalone._etcd).read_text()
    standalone._start(fresh=False)  # after a kill -9: same data, same ports
    assert len(wheel.roots) == 1 and Path(standalone._etcd).read_text() == etcd
    wheel.outcomes = ["dies"] * servers.STARTS
    with pytest.raises(RuntimeError, match=r"exited \(-6\).*address already in use"):
        standalone._start(fresh=True)


def test_a_server_is_up_once_its_proxy_says_it_serves(tmp_path: Path) -> None:
    # the wheel's /healthz may say OK before the proxy is Healthy
    standalone, wheel = _standalone(tmp_path, [])
    log = Path(wheel.base, "logs", "milvus-stdout.log")
    log.write_text('[proxy/service.go:623] ["update Proxy\'s state to Initializing"]\n')
    assert "exited" in str(standalone._serving())  # (no server process: no wait)
    log.write_text(f"[proxy/proxy.go:420] {servers.PROXY_HEALTHY}\n")
    assert standalone._serving() is None
