"""System throttling model of the emulator (pure; a fake monotonic clock)."""

from __future__ import annotations

import pytest

from localcloud.tasks.throttle import (
    DECREASE_INTERVAL_S,
    MIN_RATE_PER_S,
    RECOVER_AFTER_S,
    RECOVER_INTERVAL_S,
    SystemThrottle,
    is_overload_status,
)


def absorb(throttle: SystemThrottle, count: int, start_s: float, span_s: float = 0.9) -> None:
    """Feed ``count`` absorbed answers evenly over ``span_s`` seconds from ``start_s``."""
    for i in range(count):
        throttle.absorbed(start_s + span_s * i / count)


def test_overload_statuses_are_429_and_5xx_only() -> None:
    assert [s for s in (200, 400, 404, 409, 429, 500, 503, 599) if is_overload_status(s)] == [
        429,
        500,
        503,
        599,
    ]
    assert not is_overload_status(None)  # a connection error backs off its task only


def test_a_target_that_fails_everything_is_slowed_to_the_floor_and_a_burst_counts_once() -> None:
    throttle = SystemThrottle(100.0)
    assert throttle.rate(0.0) == 100.0 and not throttle.throttled
    for i in range(30):  # 30 concurrent 503s within one signal window, nothing absorbed
        throttle.overloaded(10.0 + i * DECREASE_INTERVAL_S / 40)
    assert throttle.rate(10.4) == 50.0  # halved once
    for i in range(1, 10):  # a signal every 0.6 s: halved each time, down to the floor
        throttle.overloaded(10.0 + i * 0.6)
    assert throttle.rate(15.5) == MIN_RATE_PER_S
    assert throttle.configured_per_s == 100.0  # the configured limit is untouched


def test_the_rate_follows_what_the_target_absorbs() -> None:
    throttle = SystemThrottle(100.0)
    absorb(throttle, 20, 0.0)  # 20 answers absorbed in the last second
    throttle.overloaded(0.95)
    assert throttle.rate(0.96) == 50.0  # at most halved by one signal
    absorb(throttle, 20, 1.0)
    throttle.overloaded(1.95)
    assert throttle.rate(1.96) == 40.0  # twice the absorbed rate
    absorb(throttle, 35, 2.0)  # the target absorbs more: the next signal lets the rate up
    throttle.overloaded(2.95)
    assert throttle.rate(2.96) == 70.0


def test_a_target_absorbing_most_deliveries_keeps_most_of_the_rate() -> None:
    throttle = SystemThrottle(100.0)
    absorb(throttle, 70, 0.0)  # 70 of 100 answered fine, 30 with 503
    throttle.overloaded(0.95)
    assert throttle.rate(0.96) == 100.0 and not throttle.throttled


def test_the_floor_applies_and_a_configured_rate_below_it_wins() -> None:
    slow = SystemThrottle(0.2)
    slow.overloaded(0.0)
    assert slow.rate(0.1) == 0.2


def test_the_rate_recovers_step_by_step_once_errors_stop() -> None:
    throttle = SystemThrottle(100.0)
    throttle.overloaded(0.0)
    throttle.overloaded(1.0)  # 25/s, calm from 2.0
    assert throttle.rate(1.0 + RECOVER_AFTER_S - 0.01) == 25.0
    assert throttle.rate(1.0 + RECOVER_AFTER_S + RECOVER_INTERVAL_S + 0.01) == 37.5
    assert throttle.rate(1.0 + RECOVER_AFTER_S + 3 * RECOVER_INTERVAL_S + 0.01) == pytest.approx(
        84.375
    )
    assert throttle.rate(60.0) == 100.0 and not throttle.throttled


def test_retry_after_postpones_recovery() -> None:
    throttle = SystemThrottle(100.0)
    throttle.overloaded(0.95, retry_after_s=30.0)
    assert throttle.rate(29.0) == 50.0
    assert throttle.rate(32.0) == 75.0


def test_a_lower_configured_rate_caps_the_enforced_one() -> None:
    throttle = SystemThrottle(100.0)
    absorb(throttle, 25, 0.0)
    throttle.overloaded(0.95)  # 50/s
    throttle.reconfigure(10.0)
    assert throttle.rate(0.96) == 10.0
    raised = SystemThrottle(100.0)
    absorb(raised, 25, 0.0)
    raised.overloaded(0.95)
    raised.reconfigure(400.0)  # raised while throttled: recovers towards the new limit
    assert raised.rate(1.0) == 50.0 and raised.throttled
    assert raised.rate(60.0) == 400.0


def test_an_unthrottled_queue_follows_a_new_configured_rate() -> None:
    throttle = SystemThrottle(100.0)
    throttle.reconfigure(300.0)
    assert throttle.rate(0.0) == 300.0 and not throttle.throttled
