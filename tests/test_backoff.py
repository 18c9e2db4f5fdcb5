"""Unit tests of the emulator's pure arithmetic: backoff, retry limits, token bucket."""

from __future__ import annotations

import pytest

from localcloud.tasks.ratelimit import TokenBucket, burst_size_for_rate
from localcloud.tasks.retry import RetryPolicy, backoff_s, policy_backoff_s, should_retry


def test_documented_backoff_example() -> None:
    # Cloud Tasks RetryConfig reference: min 10s, max 300s, max_doublings 3.
    delays = [backoff_s(n, 10, 300, 3) for n in range(1, 9)]
    assert delays == [10, 20, 40, 80, 160, 240, 300, 300]


def test_default_policy_backoff_doubles_from_100ms() -> None:
    policy = RetryPolicy()
    assert [policy_backoff_s(policy, n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])
    assert policy_backoff_s(policy, 10_000) == 3600.0


def test_zero_doublings_is_linear() -> None:
    assert [backoff_s(n, 1, 100, 0) for n in range(1, 5)] == [1, 2, 3, 4]


def test_huge_doublings_do_not_overflow() -> None:
    assert backoff_s(5000, 0.1, 3600, 10_000) == 3600.0


def test_retry_number_must_be_positive() -> None:
    with pytest.raises(ValueError):
        backoff_s(0, 1, 2, 3)


@pytest.mark.parametrize(
    ("max_attempts", "max_duration_s", "attempts", "elapsed_s", "expected"),
    [
        (3, 0, 2, 1e9, True),  # attempts left, duration unlimited
        (3, 0, 3, 0, False),  # attempts exhausted, duration unlimited
        (-1, 0, 10**6, 1e9, True),  # both unlimited: retry forever
        (-1, 60, 10**6, 59, True),  # attempts unlimited, duration not reached
        (-1, 60, 1, 60, False),  # attempts unlimited, duration reached
        (3, 60, 5, 30, True),  # attempts reached but duration not: both must be reached
        (3, 60, 2, 90, True),  # duration reached but attempts not
        (3, 60, 3, 60, False),  # both reached
    ],
)
def test_should_retry_needs_both_limits(
    max_attempts: int, max_duration_s: float, attempts: int, elapsed_s: float, expected: bool
) -> None:
    policy = RetryPolicy(max_attempts=max_attempts, max_retry_duration_s=max_duration_s)
    assert should_retry(policy, attempts, elapsed_s) is expected


def test_burst_size_rule() -> None:
    assert burst_size_for_rate(500) == 100  # Google's documented default
    assert burst_size_for_rate(10) == 2
    assert burst_size_for_rate(1) == 1
    assert burst_size_for_rate(0.1) == 1


def test_token_bucket_starts_full_and_refills_at_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, capacity=2, now_s=100.0)
    assert bucket.available(100.0) == 2
    bucket.take(2)
    assert bucket.available(100.0) == 0
    assert bucket.seconds_until_token() == pytest.approx(0.1)
    assert bucket.available(100.05) == 0
    assert bucket.available(100.1) == 1
    assert bucket.available(200.0) == 2  # never above capacity
