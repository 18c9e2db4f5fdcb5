"""Pure retry arithmetic of Cloud Tasks' ``RetryConfig`` (no I/O, no clocks).

Semantics (Cloud Tasks v2 ``RetryConfig`` reference):

* ``max_attempts`` counts the first attempt; ``-1`` means unlimited.
* ``max_retry_duration_s`` is measured from the task's first attempt; ``0`` means
  unlimited.
* Retrying stops only when *both* limits are reached; an unlimited limit is never
  reached, so with ``max_attempts=-1`` and ``max_retry_duration_s=0`` a task is
  retried forever.
* The delay before retry ``n`` (``n`` from 1) is ``min_backoff·2^(n-1)`` while
  ``n ≤ max_doublings+1``, then ``min_backoff·2^max_doublings·(n-max_doublings)``,
  capped at ``max_backoff``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
DEFAULT_MAX_RETRY_DURATION_S = 0.0

_MAX_EXPONENT = 60  # 2**60 times any sane min_backoff is far beyond any max_backoff


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A queue's (or task's) retry configuration, durations in seconds."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    min_backoff_s: float = DEFAULT_MIN_BACKOFF_S
    max_backoff_s: float = DEFAULT_MAX_BACKOFF_S
    max_doublings: int = DEFAULT_MAX_DOUBLINGS
    max_retry_duration_s: float = DEFAULT_MAX_RETRY_DURATION_S


def backoff_s(
    retry_number: int, min_backoff_s: float, max_backoff_s: float, max_doublings: int
) -> float:
    """Return the delay in seconds before retry ``retry_number`` (1 = first retry).

    >>> [backoff_s(n, 10, 300, 3) for n in range(1, 9)]
    [10.0, 20.0, 40.0, 80.0, 160.0, 240.0, 300.0, 300.0]
    """
    if retry_number < 1:
        raise ValueError(f"retry_number must be >= 1, got {retry_number}")
    doublings = max(0, max_doublings)
    if retry_number <= doublings + 1:
        exponent, factor = retry_number - 1, 1
    else:
        exponent, factor = doublings, retry_number - doublings
    if exponent > _MAX_EXPONENT:
        return float(max_backoff_s)
    delay = float(min_backoff_s) * float(2**exponent) * factor
    return float(min(delay, max_backoff_s))


def policy_backoff_s(policy: RetryPolicy, retry_number: int) -> float:
    """Return :func:`backoff_s` for ``retry_number`` under ``policy``, in seconds."""
    return backoff_s(retry_number, policy.min_backoff_s, policy.max_backoff_s, policy.max_doublings)


def should_retry(policy: RetryPolicy, attempts: int, since_first_attempt_s: float) -> bool:
    """Return True when a task that just failed its ``attempts``-th attempt is retried.

    ``since_first_attempt_s`` is the time in seconds from the first attempt's
    dispatch to now. Retrying stops only when every limited limit is reached.
    """
    attempts_unlimited = policy.max_attempts < 0
    duration_unlimited = policy.max_retry_duration_s <= 0
    if attempts_unlimited and duration_unlimited:
        return True
    attempts_reached = attempts_unlimited or attempts >= policy.max_attempts
    duration_reached = duration_unlimited or since_first_attempt_s >= policy.max_retry_duration_s
    return not (attempts_reached and duration_reached)
