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


def test_overload_statuses_are_429_and_5xx_only() -> None:
    assert [s for s in (200, 400, 404, 409, 429, 500, 503, 599) if is_overload_status(s)] == [
        429,
        500,
        503,
        599,
    ]
    assert not is_overload_status(None)  # a connection error backs off its task only


def test_an_overload_halves_the_rate_and_a_burst_counts_once() -> None:
    throttle = SystemThrottle(100.0)
    assert throttle.rate(0.0) == 100.0 and not throttle.throttled
    for i in range(30):  # 30 concurrent 503s within one signal window
        throttle.overloaded(10.0 + i * DECREASE_INTERVAL_S / 40)
    assert throttle.rate(10.4) == 50.0
    throttle.overloaded(10.0 + DECREASE_INTERVAL_S + 0.01)
    assert throttle.rate(10.6) == 25.0
    assert throttle.configured_per_s == 100.0  # the configured limit is untouched


def test_the_rate_never_drops_below_the_floor() -> None:
    throttle = SystemThrottle(4.0)
    for i in range(20):
        throttle.overloaded(i * 1.0 * DECREASE_INTERVAL_S * 1.1)
    assert throttle.rate(20 * DECREASE_INTERVAL_S) == MIN_RATE_PER_S
    slow = SystemThrottle(0.2)  # a configured rate below the floor is the floor
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
    throttle.overloaded(0.0, retry_after_s=30.0)
    assert throttle.rate(29.0) == 50.0
    assert throttle.rate(31.5) == 75.0


def test_a_lower_configured_rate_caps_the_enforced_one() -> None:
    throttle = SystemThrottle(100.0)
    throttle.overloaded(0.0)
    throttle.reconfigure(10.0)
    assert throttle.rate(0.1) == 10.0
    raised = SystemThrottle(100.0)
    raised.overloaded(0.0)
    raised.reconfigure(400.0)  # raised while throttled: recovers towards the new limit
    assert raised.rate(0.2) == 50.0 and raised.throttled
    assert raised.rate(60.0) == 400.0


def test_an_unthrottled_queue_follows_a_new_configured_rate() -> None:
    throttle = SystemThrottle(100.0)
    throttle.reconfigure(300.0)
    assert throttle.rate(0.0) == 300.0 and not throttle.throttled
