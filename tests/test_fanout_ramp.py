"""The 500/50/5 creation ramp per queue, its state in Firestore, and the cap that overrides it."""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore

from fanout.config import FanoutConfig
from fanout.ramp import QUEUE_RAMPS, FixedPacer, NoPacing, RampPacer, build_pacer
from fanout.ratecap import CreationRateCap

QUEUE = "projects/p/locations/l/queues/q-00"
T0 = 1_800_000_000.0  # a wall-clock instant, seconds


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_rate_starts_at_500_and_grows_by_half_every_five_minutes(db: firestore.Client) -> None:
    pacer = RampPacer(db, clock=Clock(T0))
    assert [pacer.rate_at(T0, T0 + s) for s in (0, 299, 300, 599, 600, 1500)] == [
        500,
        500,
        750,
        750,
        1125,
        500 * 1.5**5,
    ]


def test_the_ramp_is_kept_in_firestore_carried_on_by_the_next_run_and_reset_after_idle(
    db: firestore.Client,
) -> None:
    clock = Clock(T0)
    first = RampPacer(db, clock=clock)
    first.take(QUEUE, 100)
    assert first.rate_of(QUEUE) == 500
    clock.now = T0 + 301
    first.take(QUEUE, 100)
    assert first.rate_of(QUEUE) == 750
    state = db.collection(QUEUE_RAMPS).document("q-00").get().to_dict() or {}
    assert state["startedAt"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert state["sent"] == 200

    # A continuation in another instance: it reads the ramp and carries on from it.
    clock.now = T0 + 610
    later = RampPacer(db, clock=clock)
    later.take(QUEUE, 100)
    assert later.rate_of(QUEUE) == 1125

    # Idle for longer than idle_s: the queue starts over at 500.
    clock.now = T0 + 610 + 601
    again = RampPacer(db, clock=clock)
    again.take(QUEUE, 100)
    assert again.rate_of(QUEUE) == 500
    state = db.collection(QUEUE_RAMPS).document("q-00").get().to_dict() or {}
    assert state["startedAt"] == dt.datetime.fromtimestamp(T0 + 1211, dt.UTC)
    assert state["sent"] == 400


def test_each_queue_has_its_own_ramp(db: firestore.Client) -> None:
    clock = Clock(T0)
    pacer = RampPacer(db, clock=clock)
    pacer.take(QUEUE, 10)
    clock.now = T0 + 300
    pacer.take(QUEUE, 10)
    pacer.take(QUEUE.replace("q-00", "q-01"), 10)  # first used now: starts at 500
    assert pacer.rate_of(QUEUE) == 750
    assert pacer.rate_of(QUEUE.replace("q-00", "q-01")) == 500


def test_an_explicit_cap_overrides_the_ramp_and_a_zero_start_turns_pacing_off(
    db: firestore.Client,
) -> None:
    config = FanoutConfig.from_env({"FANOUT_MAX_CREATES_PER_SECOND": "50"})
    capped = build_pacer(db, config.max_creates_per_s, config.ramp_start_per_s)
    assert isinstance(capped, FixedPacer) and capped.rate_per_s == 50
    default = FanoutConfig.from_env({})
    assert isinstance(build_pacer(db, 0, default.ramp_start_per_s), RampPacer)
    assert default.ramp_start_per_s == 500
    off = FanoutConfig.from_env({"FANOUT_RAMP_START_PER_SECOND": "0"})
    assert isinstance(build_pacer(db, 0, off.ramp_start_per_s), NoPacing)


def test_a_rate_change_keeps_the_tokens_earned() -> None:
    now = [0.0]
    slept: list[float] = []
    cap = CreationRateCap(500, clock=lambda: now[0], sleep=slept.append)
    cap.take(500)  # the first second's burst
    now[0] = 0.5
    cap.set_rate(1000)  # 250 earned at 500/s; the bucket now holds up to 1000
    cap.take(250)
    assert slept == []
    cap.take(100)
    assert slept == [0.1]  # 100 more at 1000/s
