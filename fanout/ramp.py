"""Creation pacing per queue: the 500/50/5 ramp, kept in Firestore, or a fixed cap.

Google's rule for a new, or idle, queue is to start creating at no more than
500 tasks per second and to raise that by at most 50% every 5 minutes. The
:class:`RampPacer` does that by itself for every queue of the group: a queue's
ramp starts at ``start_per_s`` when it is first used, or first used again after
``idle_s`` seconds without creations, and its rate is
``start_per_s * 1.5 ** (whole steps of step_s since the ramp started)``.

The ramp's state (when it started, when the queue last had a creation, how many
tasks were sent to it to create) lives in ``fanout_queue_ramps/{queueId}``, so continuations
and the next scheduled runs, in any instance, carry it on. An explicit cap
(``FANOUT_MAX_CREATES_PER_SECOND``) replaces the ramp with a fixed rate per
queue (:class:`FixedPacer`). Dispatch limits stay with the queue's own config.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.cloud import firestore

from fanout.ratecap import CreationRateCap

QUEUE_RAMPS = "fanout_queue_ramps"
RAMP_START_PER_S = 500.0  # creates per second a queue's ramp starts at
RAMP_GROWTH = 1.5  # the rate's factor per step: +50%
RAMP_STEP_S = 300.0  # seconds per step: 5 minutes
RAMP_IDLE_S = 600.0  # seconds without creations after which a queue's ramp starts over
SYNC_S = 10.0  # seconds between writes of a queue's ramp state while it is in use


class Pacer(Protocol):
    """Paces task creations, queue by queue."""

    def take(self, queue_path: str, count: int) -> None:
        """Block until ``count`` creations into ``queue_path`` fit the pace."""


class NoPacing:
    """No pacing at all."""

    def take(self, queue_path: str, count: int) -> None:
        """Return at once."""


class SharedCap:
    """One :class:`CreationRateCap` for every queue together."""

    def __init__(self, cap: CreationRateCap) -> None:
        """Pace every creation through ``cap``."""
        self._cap = cap

    def take(self, queue_path: str, count: int) -> None:
        """Take ``count`` from the shared cap."""
        self._cap.take(count)


class FixedPacer:
    """A fixed cap of ``rate_per_s`` creations per second for each queue."""

    def __init__(self, rate_per_s: float) -> None:
        """Cap each queue at ``rate_per_s`` creations per second."""
        self.rate_per_s = rate_per_s
        self._caps: dict[str, CreationRateCap] = {}
        self._lock = threading.Lock()

    def take(self, queue_path: str, count: int) -> None:
        """Take ``count`` from ``queue_path``'s cap."""
        with self._lock:
            cap = self._caps.get(queue_path)
            if cap is None:
                cap = self._caps[queue_path] = CreationRateCap(self.rate_per_s)
        cap.take(count)


@dataclass
class _QueueRamp:
    """One queue's ramp: its state (wall-clock seconds) and the bucket that paces it."""

    started: float
    last_create: float
    cap: CreationRateCap
    synced_at: float = -math.inf
    unsynced: int = 0  # tasks sent but not yet counted in Firestore
    lock: threading.Lock = field(default_factory=threading.Lock)


class RampPacer:
    """The 500/50/5 ramp for each queue, its state in Firestore (see the module docstring)."""

    def __init__(
        self,
        client: firestore.Client,
        start_per_s: float = RAMP_START_PER_S,
        step_s: float = RAMP_STEP_S,
        idle_s: float = RAMP_IDLE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Ramp each queue from ``start_per_s`` creates per second, +50% per ``step_s`` seconds."""
        self._ramps_collection = client.collection(QUEUE_RAMPS)
        self.start_per_s = start_per_s
        self.step_s = step_s
        self.idle_s = idle_s
        self._clock = clock
        self._ramps: dict[str, _QueueRamp] = {}
        self._lock = threading.Lock()

    def rate_at(self, started: float, now: float) -> float:
        """Return the rate (creates per second) of a ramp started at ``started``, at ``now``."""
        steps = max(0, int((now - started) // self.step_s))
        return float(self.start_per_s * RAMP_GROWTH**steps)

    def rate_of(self, queue_path: str) -> float:
        """Return the rate (creates per second) ``queue_path`` was last paced at (0: unused)."""
        ramp = self._ramps.get(queue_path)
        return ramp.cap.rate_per_s if ramp is not None else 0.0

    def take(self, queue_path: str, count: int) -> None:
        """Block until ``count`` creations into ``queue_path`` fit its ramp; record them."""
        ramp = self._ramp(queue_path)
        with ramp.lock:
            now = self._clock()
            if now - ramp.last_create > self.idle_s:  # idle: start over
                ramp.started = now
                ramp.synced_at = -math.inf
            ramp.cap.set_rate(self.rate_at(ramp.started, now))
            ramp.last_create = now
            ramp.unsynced += count
            if now - ramp.synced_at >= SYNC_S:
                self._save(queue_path, ramp, now)
        ramp.cap.take(count)

    def _ramp(self, queue_path: str) -> _QueueRamp:
        """Return the queue's ramp, loading its state from Firestore on first use."""
        with self._lock:
            ramp = self._ramps.get(queue_path)
            if ramp is None:
                ramp = self._ramps[queue_path] = self._load(queue_path)
            return ramp

    def _load(self, queue_path: str) -> _QueueRamp:
        snapshot = self._ramps_collection.document(_queue_id(queue_path)).get()
        data = snapshot.to_dict() or {}
        started, last = data.get("startedAt"), data.get("lastCreateAt")
        if isinstance(started, dt.datetime) and isinstance(last, dt.datetime):
            return _QueueRamp(
                started.timestamp(), last.timestamp(), CreationRateCap(self.start_per_s)
            )
        return _QueueRamp(-math.inf, -math.inf, CreationRateCap(self.start_per_s))

    def _save(self, queue_path: str, ramp: _QueueRamp, now: float) -> None:
        """Write the queue's ramp state (called under the ramp's lock)."""
        self._ramps_collection.document(_queue_id(queue_path)).set(
            {
                "queue": queue_path,
                "startedAt": _instant(ramp.started),
                "lastCreateAt": _instant(now),
                "ratePerSecond": self.rate_at(ramp.started, now),
                "sent": firestore.Increment(ramp.unsynced),
            },
            merge=True,
        )
        ramp.synced_at = now
        ramp.unsynced = 0


def build_pacer(
    client: firestore.Client, max_creates_per_s: float, ramp_start_per_s: float
) -> Pacer:
    """Return the pacing the settings ask for: a fixed cap, the ramp, or none.

    A cap (``max_creates_per_s`` > 0) overrides the ramp; a ramp start of 0 turns
    pacing off.
    """
    if max_creates_per_s > 0:
        return FixedPacer(max_creates_per_s)
    if ramp_start_per_s > 0:
        return RampPacer(client, ramp_start_per_s)
    return NoPacing()


def ramp_states(client: firestore.Client) -> list[dict[str, Any]]:
    """Return every queue's stored ramp state, by queue id."""
    return [
        {"queueId": snapshot.id, **(snapshot.to_dict() or {})}
        for snapshot in client.collection(QUEUE_RAMPS).stream()
    ]


def _queue_id(queue_path: str) -> str:
    return queue_path.rsplit("/", 1)[-1]


def _instant(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)
