"""``until="indexed"`` and ``until="loaded"`` (``_steps.staged``) over a fake server,
through both drivers: the stages after persisted, under the call's one deadline."""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import replace
from typing import Any

import grpc
import pytest
from pymilvus.exceptions import MilvusException, ParamError
from pymilvus.grpc_gen import milvus_pb2

from pymilvus_flushsync import FlushSyncResponse, FlushTimeoutError
from pymilvus_flushsync._call import prepare

from ..fakes import (
    POLICY,
    FakeRpcError,
    FakeServer,
    flush_reply,
    state_reply,
    status,
    through,
)

FINISHED, IN_PROGRESS, FAILED = 3, 2, 4  # common.IndexState
FLUSHED, DROPPED = 4, 6  # common.SegmentState
NOT_LOAD, LOADED = 1, 3  # common.LoadState


class Stages:
    """Collection ``a``: Flush seals segment 1 (``rows`` rows); DescribeIndex reports
    it pending for ``builds`` polls (with the state already "Finished", as Milvus has
    been seen to say), then indexed; GetQuerySegmentInfo lists it from the
    ``hand_off``-th poll, indexed if ``served_indexed``. ``compacted``: by then
    segment 1 was compacted into 2."""

    def __init__(
        self, *, builds: int = 3, hand_off: int = 2, index: bool = True, rows: int = 3000
    ) -> None:
        self.builds, self.hand_off, self.index, self.rows = builds, hand_off, index, rows
        self.served_indexed = index
        self.index_polls = self.serving_polls = 0
        self.load_state = LOADED
        self.compacted = False
        self.failed = False
        self.on_serving: Any = None
        self.refresh_status = status()

    def __call__(self, method: str, request: Any) -> Any:
        return getattr(self, f"on_{method}")(request)

    def on_GetLoadState(self, request: Any) -> Any:
        return milvus_pb2.GetLoadStateResponse(status=status(), state=self.load_state)

    def on_LoadCollection(self, request: Any) -> Any:
        assert request.refresh
        return self.refresh_status

    def on_Flush(self, request: Any) -> Any:
        return flush_reply({"a": [1]}, flush_ts=5000)

    def on_GetFlushState(self, request: Any) -> Any:
        return state_reply(True)

    def on_DescribeIndex(self, request: Any) -> Any:
        if not self.index:
            return milvus_pb2.DescribeIndexResponse(status=status(700, "index not found"))
        self.index_polls += 1
        built = self.index_polls > self.builds
        reply = milvus_pb2.DescribeIndexResponse(status=status())
        reply.index_descriptions.add(
            index_name="vector",
            total_rows=self.rows,
            indexed_rows=self.rows if built else 0,
            pending_index_rows=0 if built else self.rows,
            state=FAILED if self.failed else FINISHED,
            index_state_fail_reason="out of memory" if self.failed else "",
        )
        return reply

    def on_GetPersistentSegmentInfo(self, request: Any) -> Any:
        reply = milvus_pb2.GetPersistentSegmentInfoResponse(status=status())
        state = DROPPED if self.compacted else FLUSHED
        reply.infos.add(segmentID=1, state=state, num_rows=self.rows)
        if self.compacted:
            reply.infos.add(segmentID=2, state=FLUSHED, num_rows=self.rows)
        return reply

    def on_GetQuerySegmentInfo(self, request: Any) -> Any:
        self.serving_polls += 1
        if self.on_serving is not None:
            self.on_serving(self.serving_polls)
        reply = milvus_pb2.GetQuerySegmentInfoResponse(status=status())
        if self.serving_polls >= self.hand_off:
            segment = 2 if self.compacted and self.serving_polls > self.hand_off else 1
            index_name = "vector" if self.served_indexed else ""
            reply.infos.add(segmentID=segment, num_rows=self.rows, index_name=index_name)
        return reply


def flush(  # noqa: PLR0917  # a test helper's knobs
    flavor: str,
    server: FakeServer,
    until: str,
    timeout: float = 10.0,
    policy: Any = POLICY,
    on_progress: Any = None,
) -> Any:
    """flush_sync of ``a`` through one driver: the response, or what it raised."""
    client = server.client()
    try:
        machine = prepare(client, "a", None, timeout, policy, until=until, on_progress=on_progress)
        return through(flavor, machine, client)
    except MilvusException as error:
        return error


def methods(server: FakeServer) -> list[str]:
    return [method for method, _ in server.sent]


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_indexed_waits_on_the_counts_not_the_state(flavor: str) -> None:
    stages = Stages(builds=3)
    server = FakeServer(stages)
    response = flush(flavor, server, "indexed")
    assert isinstance(response, FlushSyncResponse) and response.flushed
    state = response.collections["a"]
    assert state.indexes == 1 and state.indexed_seconds is not None
    assert state.loaded_seconds is None and stages.index_polls == 4  # "Finished" lied 3 times
    assert methods(server).count("GetQuerySegmentInfo") == 0
    assert pickle.loads(pickle.dumps(response)) == response
    assert response.to_dict()["collections"]["a"]["indexes"] == 1


def test_a_collection_without_an_index_is_indexed_once_persisted(flavor: str) -> None:
    server = FakeServer(Stages(index=False))
    response = flush(flavor, server, "indexed")
    assert isinstance(response, FlushSyncResponse)
    assert response.collections["a"].indexes == 0  # it had none: nothing to build


def test_a_failed_build_fails_the_call_with_its_reason(flavor: str) -> None:
    stages = Stages()
    stages.failed = True
    error = flush(flavor, FakeServer(stages), "indexed")
    assert isinstance(error, MilvusException) and "out of memory" in error.message


def test_loaded_waits_until_the_query_nodes_serve_the_segment_indexed(flavor: str) -> None:
    stages = Stages(builds=1, hand_off=3)
    server = FakeServer(stages)
    response = flush(flavor, server, "loaded")
    assert isinstance(response, FlushSyncResponse) and response.flushed
    state = response.collections["a"]
    assert state.indexed_seconds is not None and state.loaded_seconds is not None
    assert state.loaded_seconds >= state.indexed_seconds >= (state.seconds or 0.0)
    assert stages.serving_polls == 3
    sent = methods(server)
    assert sent[0] == "GetLoadState" and sent.index("GetLoadState") < sent.index("Flush")
    # once indexed, one refresh (as pymilvus's refresh_load), then the serving polls
    assert sent.count("LoadCollection") == 1
    assert sent.index("DescribeIndex") < sent.index("LoadCollection")
    assert sent.index("LoadCollection") < sent.index("GetQuerySegmentInfo")


@pytest.mark.parametrize("refused", [True, False])
def test_a_refused_refresh_or_none_leaves_the_polls_to_decide(flavor: str, refused: bool) -> None:
    """The refresh only speeds the hand-off up: a final refusal of it (not fully
    loaded yet, no privilege) moves on; ``refresh_load=False`` sends none."""
    stages = Stages(builds=0, hand_off=2)
    stages.refresh_status = status(101, "collection not fully loaded")
    server = FakeServer(stages)
    policy = POLICY if refused else replace(POLICY, refresh_load=False)
    response = flush(flavor, server, "loaded", policy=policy)
    assert isinstance(response, FlushSyncResponse) and response.collections["a"].loaded_seconds
    assert methods(server).count("LoadCollection") == (1 if refused else 0)


@pytest.mark.parametrize(("rows", "served"), [(1023, True), (1024, False)])
def test_a_segment_too_small_to_build_is_served_without_an_index(
    flavor: str, rows: int, served: bool
) -> None:
    """Below ``FlushPolicy.index_min_rows`` (the server's 1024) the query nodes serve
    a segment without an index name (measured on 2.3.5: 500 rows): presence is all."""
    stages = Stages(builds=0, hand_off=1, rows=rows)
    stages.served_indexed = False
    response = flush(flavor, FakeServer(stages), "loaded", timeout=0.5)
    assert isinstance(response, FlushSyncResponse) is served
    if not served:
        assert isinstance(response, FlushTimeoutError) and "not yet loaded" in response.message


def test_a_segment_compaction_replaced_is_waited_on_as_its_replacement(flavor: str) -> None:
    stages = Stages(builds=1, hand_off=1)
    stages.compacted = True  # 1 is Dropped; 2 (its rows) is served from the 2nd poll
    response = flush(flavor, FakeServer(stages), "loaded")
    assert isinstance(response, FlushSyncResponse) and stages.serving_polls == 2


def test_a_collection_not_loaded_fails_before_any_flush(flavor: str) -> None:
    stages = Stages()
    stages.load_state = NOT_LOAD
    server = FakeServer(stages)
    error = flush(flavor, server, "loaded")
    assert (
        isinstance(error, MilvusException)
        and error.code == 101
        and "[collection=a]" in (error.message)
    )
    assert methods(server) == ["GetLoadState"]


def test_a_collection_released_mid_wait_fails_at_its_next_recheck(flavor: str) -> None:
    """GetQuerySegmentInfo is polled alone; GetLoadState every ``stage_recheck``."""
    stages = Stages(builds=1, hand_off=10**6)
    released: list[float] = []

    def release(polls: int) -> None:
        if polls == 2:
            stages.load_state = NOT_LOAD
            released.append(time.monotonic())

    stages.on_serving = release
    server = FakeServer(stages)
    policy = replace(POLICY, stage_recheck=0.2)
    error = flush(flavor, server, "loaded", policy=policy)
    assert isinstance(error, MilvusException) and error.code == 101
    assert time.monotonic() - released[0] <= 0.2 + 0.25  # the recheck, and a tolerance
    sent = methods(server)
    assert sent.count("GetQuerySegmentInfo") > 2 * sent.count("GetLoadState") - 2


@pytest.mark.parametrize(("until", "stuck"), [("indexed", "indexed"), ("loaded", "loaded")])
def test_the_deadline_names_the_stage_and_what_is_behind(
    flavor: str, until: str, stuck: str
) -> None:
    stages = Stages(builds=1 if stuck == "loaded" else 10**6, hand_off=10**6)
    error = flush(flavor, FakeServer(stages), until, timeout=0.4)
    assert isinstance(error, FlushTimeoutError)
    assert f"not yet {stuck}: a" in error.message and error.pending == ("a",)


def test_a_long_build_is_polled_with_a_back_off(flavor: str) -> None:
    """``FlushPolicy.stage_poll``: over 1 s, about 32 polls (5 ms each: 200)."""
    stages = Stages(builds=10**6)
    error = flush(flavor, FakeServer(stages), "indexed", timeout=1.0)
    assert isinstance(error, FlushTimeoutError)
    assert 20 <= stages.index_polls <= 40


def test_an_unknown_until_is_a_param_error_before_any_rpc() -> None:
    server = FakeServer(Stages())
    with pytest.raises(
        ParamError, match="until must be one of visible, persisted, indexed, loaded"
    ):
        prepare(server.client(), "a", None, 10.0, POLICY, until="built")
    assert server.sent == []


def test_the_stage_fields_round_trip(flavor: str) -> None:
    response = flush(flavor, FakeServer(Stages(builds=0, hand_off=1)), "loaded")
    assert isinstance(response, FlushSyncResponse)
    state = response.collections["a"]
    assert replace(state) == state and pickle.loads(pickle.dumps(state)) == state
    as_dict = response.to_dict()["collections"]["a"]
    assert as_dict["indexed_seconds"] == state.indexed_seconds
    assert as_dict["loaded_seconds"] == state.loaded_seconds


def test_the_progress_hook_and_the_heartbeat_report_the_stage(
    flavor: str, caplog: pytest.LogCaptureFixture
) -> None:
    stages = Stages(builds=25, hand_off=25)
    seen: list[str] = []

    def hook(snapshot: FlushSyncResponse) -> None:
        if not seen or seen[-1] != snapshot.stage:
            seen.append(snapshot.stage)

    policy = replace(POLICY, heartbeat=0.1)
    with caplog.at_level(logging.INFO, logger="pymilvus_flushsync"):
        response = flush(flavor, FakeServer(stages), "loaded", policy=policy, on_progress=hook)
    assert isinstance(response, FlushSyncResponse) and response.stage == "loaded"
    assert seen[-2:] == ["indexed", "loaded"] and set(seen) <= {"persisted", "indexed", "loaded"}
    assert response.to_dict()["stage"] == "loaded"
    beats = [m for m in caplog.messages if "still waiting" in m]
    assert any("stage index" in m and "indexed pending: a" in m for m in beats)
    assert any("stage serving" in m and "loaded pending: a" in m for m in beats)


def test_a_stage_retries_a_rate_limit_and_a_restart_as_the_flush_does(flavor: str) -> None:
    """DescribeIndex answered "rate limit exceeded", then unreachable (a restart), then
    GetQuerySegmentInfo unreachable once: each retried under the one deadline."""
    stages = Stages(builds=0, hand_off=1)
    faults = {"DescribeIndex": 2, "GetQuerySegmentInfo": 1}

    def answer(method: str, request: Any) -> Any:
        left = faults.get(method, 0)
        if left:
            faults[method] = left - 1
            if method == "DescribeIndex" and left == 2:
                return milvus_pb2.DescribeIndexResponse(status=status(8, "rate limit exceeded"))
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
        return stages(method, request)

    server = FakeServer(answer)
    response = flush(flavor, server, "loaded")
    assert isinstance(response, FlushSyncResponse) and response.collections["a"].loaded_seconds
    sent = methods(server)
    assert sent.count("DescribeIndex") == 3 and sent.count("GetQuerySegmentInfo") == 2
