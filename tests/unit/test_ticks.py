"""The flush-completion phase model, and how the core polls with it. No server."""

from __future__ import annotations

from typing import Any

import pytest

from pymilvus_flushsync import Backoff, FlushPolicy
from pymilvus_flushsync._core import FlushMachine, SendRpc
from pymilvus_flushsync._ticks import TickModel, for_endpoint

from ..fakes import FakeClock, drive, flush_reply, state_reply

P = 0.2
PHASE = 0.083  # flips happen at 0.083 + k * 0.2


def flip_after(t: float) -> float:
    """The first flip time at or after t."""
    k = -(-(t - PHASE) // P)
    return PHASE + k * P


def window(model: TickModel, now: float) -> tuple[float, float]:
    found = model.window(now)
    assert found is not None, "the model is not trusted"
    return found


def test_untrusted_until_two_brackets_agree() -> None:
    model = TickModel(P)
    assert model.next_poll(10.0) is None
    model.observe(10.070, 10.090)
    assert not model.trusted(10.1)
    assert model.next_poll(10.1) is None
    model.observe(12.075, 12.095)  # 10 periods later
    assert model.trusted(12.1)
    lo, hi = window(model, 12.1)
    assert lo == pytest.approx(12.075)
    assert hi == pytest.approx(12.090)


def test_the_window_meets_every_recent_bracket() -> None:
    model = TickModel(P, keep=3)
    for lo, hi in [(1.030, 1.035), (1.240, 1.290), (2.060, 2.068), (2.282, 2.290)]:
        model.observe(lo, hi)
    lo, hi = window(model, 2.3)  # the first bracket fell out; the wide one does not stretch it
    assert lo % P == pytest.approx(0.068)
    assert hi % P == pytest.approx(0.082)


def test_a_bracket_that_disagrees_drops_the_oldest_until_the_rest_agree() -> None:
    model = TickModel(P)
    model.observe(10.070, 10.090)
    model.observe(10.270, 10.290)
    assert model.trusted(10.3)
    model.observe(11.180, 11.184)  # the window would span 90 ms: too wide
    assert not model.trusted(11.2)  # nothing older agrees with it
    model.observe(11.378, 11.386)  # agrees with the new one
    assert window(model, 11.4)[0] % P == pytest.approx(0.180)


def test_a_bracket_that_disagrees_with_the_oldest_only_drops_just_that() -> None:
    model = TickModel(P)
    model.observe(10.070, 10.090)
    model.observe(10.320, 10.330)
    model.observe(10.525, 10.530)
    assert window(model, 10.6)[1] % P == pytest.approx(0.125)  # (0.090, 0.125)
    model.observe(10.760, 10.765)  # 70 ms from the oldest's end: that one goes
    assert model.trusted(10.8)
    lo, hi = window(model, 10.8)
    assert (lo % P, hi % P) == pytest.approx((0.130, 0.160))


def test_wide_empty_and_old_brackets_are_ignored() -> None:
    model = TickModel(P, max_age=10.0)
    model.observe(10.0, 10.15)  # wider than half a period
    model.observe(10.2, 10.2)
    assert model.window(10.3) is None
    model.observe(10.070, 10.090)
    model.observe(30.071, 30.080)  # the first is 20 s old by now
    assert not model.trusted(30.1)


def test_next_poll_walks_the_window_then_waits_for_the_next_tick() -> None:
    model = TickModel(P, spacing=0.013, late=0.025)
    model.observe(20.055, 20.060)
    model.observe(20.300, 20.305)  # window 0.060-0.100 mod 0.2
    times = []
    now = 20.45
    for _ in range(6):
        at = model.next_poll(now)
        assert at is not None
        now = at
        times.append(round(now % P, 4))
    # the start, three even steps through 0.060-0.102, one 25 ms later, the next tick
    assert times == pytest.approx([0.060, 0.074, 0.088, 0.102, 0.127, 0.060], abs=1e-3)


def test_two_misses_in_a_row_after_trust_forget_everything() -> None:
    model = TickModel(P)
    model.observe(10.070, 10.080)
    model.observe(10.272, 10.281)
    assert model.trusted(10.3)
    model.observe(11.080, 11.27)  # caught a tick later: one outlier is forgiven
    assert model.trusted(11.3)
    model.observe(11.672, 11.679)  # a good one in between resets the count
    model.observe(12.080, 12.27)
    assert model.trusted(12.3)
    model.observe(13.080, 13.27)  # the second miss in a row: the window was wrong
    assert not model.trusted(13.3)
    assert model.window(13.3) is None


def test_a_model_learned_long_ago_schedules_nothing() -> None:
    model = TickModel(P, max_age=120.0)
    model.observe(10.070, 10.090)
    model.observe(12.075, 12.095)
    assert model.trusted(12.1) and model.next_poll(12.1) is not None
    assert not model.trusted(12.095 + 121.0)  # expired on read, with no new bracket
    assert model.next_poll(12.095 + 121.0) is None


def test_for_endpoint_shares_one_model_per_endpoint() -> None:
    assert for_endpoint("h:1", 0.2) is for_endpoint("h:1", 0.2)
    assert for_endpoint("h:1", 0.2) is not for_endpoint("h:2", 0.2)


def simulate(machine: FlushMachine, clock: FakeClock, done_at: float, rpc: float = 0.001) -> int:
    """Drive a machine against a fake server whose GetFlushState flips at done_at."""

    def answer(action: SendRpc) -> Any:
        asked_at = clock.now
        clock.advance(rpc)
        return (
            flush_reply({"a": [1]})
            if action.method == "Flush"
            else state_reply(asked_at >= done_at)
        )

    return drive(machine, answer, clock.advance).polls


def test_learned_phase_cuts_polls_and_latency() -> None:
    clock = FakeClock(1000.0)
    model = TickModel(P)
    policy = FlushPolicy(poll=Backoff(0.005, 1.5, 0.045))
    overshoots, polls = [], []
    for trial in range(12):
        clock.advance(0.37 * trial + 1.0)
        m = FlushMachine(("a",), "", 30.0, policy, clock=clock, ticks=model)
        done_at = flip_after(clock.now + 2.5)
        polls.append(simulate(m, clock, done_at))
        overshoots.append(clock.now - done_at)
    assert model.trusted(clock.now)
    # blind: up to 45 ms late and ~60 polls; learned: a few ms late and a handful of polls
    assert max(overshoots[:1]) <= 0.05
    assert max(overshoots[-6:]) <= 0.015  # at most one window spacing
    assert max(polls[-6:]) <= 45
    assert max(polls[-6:]) < min(polls[:1]) / 1.5


def test_a_server_that_is_not_periodic_keeps_the_blind_schedule_bounds() -> None:
    clock = FakeClock(1000.0)
    model = TickModel(P)
    policy = FlushPolicy(poll=Backoff(0.005, 1.5, 0.045))
    worst = 0.0
    for trial in range(20):
        clock.advance(1.0)
        m = FlushMachine(("a",), "", 30.0, policy, clock=clock, ticks=model)
        done_at = clock.now + 0.5 + 0.0137 * trial * trial % 0.9  # no period
        simulate(m, clock, done_at)
        worst = max(worst, clock.now - done_at)
    assert worst <= P  # a wrongly trusted model costs at most one tick, once
