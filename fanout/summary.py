"""What one segment of a run did: counts, failures, state, continuation."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)

MAX_LISTED_FAILURES = 100  # failures kept in a summary and in a run record

COUNTS = ("orders", "queued", "tasks_created", "deduplicated", "failed", "pages")


class RunState(StrEnum):
    """Where a run stands, as stored in its run record."""

    RUNNING = "running"
    CONTINUING = "continuing"  # stopped at its time budget; a continuation task is queued
    STOPPED = "stopped"  # stopped at its time budget with no continuation (no FANOUT_URL)
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # crashed or killed: no end record, its lease expired
    SKIPPED = "skipped"  # another run held the lease
    DRY_RUN = "dry-run"


@dataclass
class RunSummary:
    """Counts of one segment of a run (the first call, or one continuation).

    ``seconds`` is the segment's wall time; ``continuation`` names the task that
    carries on after a time-budget stop. ``failed`` counts tasks that could not
    be created plus orders that could not form their tasks; ``failures`` lists
    the orders concerned, with reasons.
    """

    run_id: str
    trigger: str
    segment: int = 0
    state: str = RunState.RUNNING.value
    orders: int = 0
    queued: int = 0
    tasks_created: int = 0
    deduplicated: int = 0
    failed: int = 0
    pages: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)
    continuation: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return asdict(self)

    def counts(self) -> dict[str, int]:
        """Return just the counters."""
        return {name: int(getattr(self, name)) for name in COUNTS}

    def add_failure(self, order_id: str, reason: str) -> None:
        """Count an order that was not queued, list it (up to a limit) and log it."""
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append({"orderId": order_id, "reason": reason})
        log.error("order not queued: %s", reason, extra={"orderId": order_id, "runId": self.run_id})
