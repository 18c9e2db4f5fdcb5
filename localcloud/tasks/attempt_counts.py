"""Counts of dispatch attempts per queue and response code, over the last minutes.

They back the emulator's Cloud Monitoring metric
``cloudtasks.googleapis.com/queue/task_attempt_count``
(:mod:`localcloud.tasks.monitoring`). Each (queue, response code) series keeps
one counter per second that had attempts, for :data:`RETENTION_S` seconds;
older seconds are dropped as new attempts arrive, and a series with none left
is forgotten, so memory stays bounded by the retention, the queues and the
(few) response codes.

The response code is the attempt's ``google.rpc.Code`` name in lower case:
``ok`` for a 2xx answer, ``unavailable`` for a 503 or no connection,
``deadline_exceeded`` when the dispatch deadline passed, and so on
(:func:`localcloud.tasks.delivery.http_to_grpc_code` maps HTTP statuses).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import grpc

RETENTION_S = 900  # how long a second's count is kept, seconds (15 minutes)
SUCCESS_CODE = "ok"

_CODE_NAMES: dict[int, str] = {code.value[0]: code.name.lower() for code in grpc.StatusCode}


def response_code_label(grpc_code: int) -> str:
    """Return the ``response_code`` label of an attempt whose outcome was ``grpc_code``."""
    return _CODE_NAMES.get(grpc_code, "unknown")


@dataclass(frozen=True)
class SeriesKey:
    """One series: a queue's full name and an attempt response code."""

    queue_name: str
    response_code: str


class AttemptCounts:
    """Thread-safe counters of attempts per (queue, response code) and per second."""

    def __init__(self, retention_s: int = RETENTION_S) -> None:
        """Keep each second's count ``retention_s`` seconds."""
        self.retention_s = retention_s
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, dict[int, int]] = {}  # epoch second -> attempts
        self._pruned_at = 0  # the epoch second old counts were last dropped at

    def record(self, queue_name: str, grpc_code: int, at_s: float) -> None:
        """Count one attempt of ``queue_name`` that ended with ``grpc_code`` at ``at_s``.

        ``at_s`` is in seconds since the epoch.
        """
        key = SeriesKey(queue_name, response_code_label(grpc_code))
        second = math.floor(at_s)
        with self._lock:
            seconds = self._series.setdefault(key, {})
            seconds[second] = seconds.get(second, 0) + 1
            if second > self._pruned_at:  # at most once a second
                self._pruned_at = second
                self._forget_before(second - self.retention_s)

    def seconds(self, key: SeriesKey) -> dict[int, int]:
        """Return a copy of series ``key``'s counts: attempts by epoch second (empty if none).

        The attempts of second ``s`` are those that ended in ``[s, s + 1)``; their
        time is taken as ``s``.
        """
        with self._lock:
            return dict(self._series.get(key, {}))

    def series_keys(self) -> list[SeriesKey]:
        """Return every series with attempts in the retention, by queue then code."""
        with self._lock:
            keys = list(self._series)
        return sorted(keys, key=lambda k: (k.queue_name, k.response_code))

    def _forget_before(self, oldest_kept: int) -> None:
        """Drop seconds before ``oldest_kept`` and series left empty (lock held)."""
        for key in list(self._series):
            seconds = self._series[key]
            for second in [s for s in seconds if s < oldest_kept]:
                del seconds[second]
            if not seconds:
                del self._series[key]
