"""System throttling: the enforced dispatch rate of one queue (pure; the caller passes the clock).

For HTTP targets Cloud Tasks reads a 429 or a 5xx answer as overload of the
target and slows the *whole queue* until errors stop; the configured
``max_dispatches_per_second`` is not changed, and the rate in force (the
"enforced rate" in the console) recovers as answers succeed again. A
``Retry-After`` on such an answer is considered. Any other answer (a 4xx such as
409) only backs off the task that got it.

The model here, with its constants:

* The queue counts the answers its target *absorbed* (every answer that is not
  an overload signal) over the last ``WINDOW_S`` seconds.
* An overload answer sets the enforced rate to ``ABSORBED_FACTOR`` times the
  absorbed rate (at most the configured rate), but to no less than
  ``DECREASE_FACTOR`` times the rate in force and never below ``MIN_RATE_PER_S``
  (or the configured rate, if lower); at most once per ``DECREASE_INTERVAL_S``,
  so a burst of concurrent errors counts as one signal. A target that fails
  everything is slowed by half per signal, to the floor within a few seconds;
  one that absorbs more than half the deliveries keeps, or regains, the rate.
* Once ``RECOVER_AFTER_S`` seconds have passed since the last overload answer
  (or its ``Retry-After``, when later), the enforced rate grows by
  ``RECOVER_FACTOR`` every ``RECOVER_INTERVAL_S`` seconds, up to the configured rate.
"""

from __future__ import annotations

import collections
import math

WINDOW_S = 1.0  # the absorbed rate is measured over this many seconds
DECREASE_FACTOR = 0.5  # one overload signal lowers the rate by at most this factor
ABSORBED_FACTOR = 2.0  # an overload signal caps the rate at this times the absorbed rate
DECREASE_INTERVAL_S = 0.5  # overload answers closer than this, seconds, count as one signal
MIN_RATE_PER_S = 1.0  # the enforced rate never drops below this, dispatches per second
RECOVER_AFTER_S = 1.0  # seconds without an overload answer before the rate recovers
RECOVER_FACTOR = 1.5  # enforced rate multiplier per recovery step
RECOVER_INTERVAL_S = 1.0  # seconds per recovery step


def is_overload_status(http_status: int | None) -> bool:
    """Tell whether an HTTP target's answer signals overload (429 or any 5xx)."""
    return http_status is not None and (http_status == 429 or 500 <= http_status <= 599)


class SystemThrottle:
    """The enforced rate (dispatches per second) of one queue, at most its configured rate.

    Not thread-safe: the owning dispatch loop serialises access. Times are
    monotonic seconds supplied by the caller.
    """

    def __init__(self, configured_per_s: float) -> None:
        self.configured_per_s = configured_per_s
        self._rate_per_s = configured_per_s  # rate as of _changed_s
        self._changed_s = -math.inf  # when _rate_per_s was last set, monotonic seconds
        self._calm_from_s = -math.inf  # recovery may start from here, monotonic seconds
        self._absorbed: collections.deque[float] = collections.deque()  # answer times

    @property
    def throttled(self) -> bool:
        """True while the enforced rate may be below the configured one."""
        return self._rate_per_s < self.configured_per_s

    def reconfigure(self, configured_per_s: float) -> None:
        """Take a new configured rate: followed at once unless throttled, and never exceeded."""
        if not self.throttled:
            self._rate_per_s = configured_per_s
        self.configured_per_s = configured_per_s
        self._rate_per_s = min(self._rate_per_s, configured_per_s)

    def rate(self, now_s: float) -> float:
        """Return the enforced rate at ``now_s``, recovering it if errors have stopped."""
        if not self.throttled or now_s < self._calm_from_s:
            return self._rate_per_s
        since_s = max(self._calm_from_s, self._changed_s)
        steps = math.floor((now_s - since_s) / RECOVER_INTERVAL_S)
        if steps > 0:
            grown = self._rate_per_s * RECOVER_FACTOR**steps
            self._rate_per_s = min(self.configured_per_s, grown)
            self._changed_s = since_s + steps * RECOVER_INTERVAL_S
        return self._rate_per_s

    def absorbed(self, now_s: float) -> None:
        """Take an answer received at ``now_s`` that is not an overload signal."""
        self._absorbed.append(now_s)
        self._trim(now_s)

    def overloaded(self, now_s: float, retry_after_s: float | None = None) -> None:
        """Take an overload answer received at ``now_s`` (``Retry-After`` in seconds, if any)."""
        current = self.rate(now_s)
        calm_from_s = now_s + max(RECOVER_AFTER_S, retry_after_s or 0.0)
        self._calm_from_s = max(self._calm_from_s, calm_from_s)
        if now_s - self._changed_s < DECREASE_INTERVAL_S and self.throttled:
            return
        self._trim(now_s)
        absorbed_per_s = len(self._absorbed) / WINDOW_S
        floor = min(MIN_RATE_PER_S, self.configured_per_s)
        absorbable = min(self.configured_per_s, ABSORBED_FACTOR * absorbed_per_s)
        self._rate_per_s = max(floor, DECREASE_FACTOR * current, absorbable)
        self._changed_s = now_s

    def _trim(self, now_s: float) -> None:
        while self._absorbed and self._absorbed[0] <= now_s - WINDOW_S:
            self._absorbed.popleft()
