"""One fan-out run: page pending orders, create their tasks, mark them queued.

Reading the next page overlaps creating the current page's tasks, and marking a
page ``queued`` overlaps the next page's creation; at most one page is read ahead
and one page is being marked, so memory stays flat whatever the backlog.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from google.cloud import firestore

from fanout.enqueue import Created, Enqueuer
from fanout.marking import mark_queued
from fanout.paging import PageOfOrders, pending_pages
from orders.contract import TaskPayload, build_task
from orders.errors import OrdersError
from orders.schema import ACTIONS, FANOUT_RUNS
from orders.settings import CloudSettings

log = logging.getLogger(__name__)

MAX_LISTED_FAILURES = 100  # failures kept in the summary and the run record


@dataclass
class RunSummary:
    """Counts of one run, returned to the caller and stored in ``fanout_runs``."""

    run_id: str
    trigger: str
    orders: int = 0
    queued: int = 0
    tasks_created: int = 0
    deduplicated: int = 0
    failed: int = 0
    pages: int = 0
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return asdict(self)


class FanoutRunner:
    """Runs fan-outs with clients built once by the caller."""

    def __init__(
        self,
        db: firestore.Client,
        enqueuer: Enqueuer,
        cloud: CloudSettings,
        page_size: int,
    ) -> None:
        """Fan out orders from ``db`` through ``enqueuer``, ``page_size`` orders per page."""
        self._db = db
        self._enqueuer = enqueuer
        self._cloud = cloud
        self._page_size = page_size

    def run(self, trigger: str) -> RunSummary:
        """Fan out every pending order once; return the run's summary."""
        summary = RunSummary(run_id=_new_run_id(), trigger=trigger)
        started = time.monotonic()
        run_ref = self._db.collection(FANOUT_RUNS).document(summary.run_id)
        run_ref.set(
            {"trigger": trigger, "startedAt": firestore.SERVER_TIMESTAMP, "state": "running"}
        )
        try:
            self._run_pages(summary)
        except Exception as exc:
            self._record_end(run_ref, summary, started, {"state": "failed", "error": repr(exc)})
            raise
        record = self._record_end(run_ref, summary, started, {"state": "finished"})
        log.info("fan-out finished", extra={"runId": summary.run_id, **record})
        return summary

    @staticmethod
    def _record_end(
        run_ref: firestore.DocumentReference,
        summary: RunSummary,
        started: float,
        outcome: dict[str, str],
    ) -> dict[str, Any]:
        """Store the run's counts and ``outcome`` in its run record; return the counts."""
        summary.seconds = round(time.monotonic() - started, 3)
        record = {k: v for k, v in summary.to_dict().items() if k != "run_id"}
        run_ref.set({**record, **outcome, "finishedAt": firestore.SERVER_TIMESTAMP}, merge=True)
        return record

    def _run_pages(self, summary: RunSummary) -> None:
        """Page, create and mark, overlapping the three (see the module docstring)."""
        fields = {"runId": summary.run_id, "queuedAt": firestore.SERVER_TIMESTAMP}
        with ThreadPoolExecutor(2, thread_name_prefix="fanout-run") as pool:
            marking: Future[list[str]] | None = None
            for page in _read_ahead(pool, pending_pages(self._db, self._page_size)):
                ready = self._fan_out_page(page, summary)
                if marking is not None:
                    self._note_unmarked(marking.result(), summary)
                marking = pool.submit(mark_queued, self._db, ready, fields)
                summary.queued += len(ready)
            if marking is not None:
                self._note_unmarked(marking.result(), summary)

    @staticmethod
    def _note_unmarked(order_ids: list[str], summary: RunSummary) -> None:
        """Count orders whose tasks exist but that could not be marked queued this run."""
        summary.queued -= len(order_ids)
        for order_id in order_ids:
            _add_failure(summary, order_id, "kept changing while being marked queued; left pending")

    def _fan_out_page(self, page: PageOfOrders, summary: RunSummary) -> PageOfOrders:
        """Create the page's tasks; return the orders whose every task now exists."""
        summary.pages += 1
        summary.orders += len(page)
        tasks, owners, broken = [], [], {}
        for snapshot in page:
            generation = int(((snapshot.to_dict() or {}).get("fanout") or {}).get("generation", 0))
            for action in ACTIONS:
                payload = TaskPayload(snapshot.id, action, generation, summary.run_id)
                try:
                    tasks.append(build_task(self._cloud, payload))
                except OrdersError as exc:
                    broken[snapshot.id] = str(exc)
                    continue
                owners.append(snapshot.id)
        for owner, result in zip(owners, self._enqueuer.enqueue(tasks), strict=True):
            if result.outcome is Created.CREATED:
                summary.tasks_created += 1
            elif result.outcome is Created.DEDUPLICATED:
                summary.deduplicated += 1
            else:
                summary.failed += 1
                broken.setdefault(owner, result.reason)
        for order_id, reason in broken.items():
            _add_failure(summary, order_id, reason)
        return [s for s in page if s.id not in broken]


def _add_failure(summary: RunSummary, order_id: str, reason: str) -> None:
    """List an order that was not queued (up to MAX_LISTED_FAILURES) and log it."""
    if len(summary.failures) < MAX_LISTED_FAILURES:
        summary.failures.append({"orderId": order_id, "reason": reason})
    log.error("order not queued: %s", reason, extra={"orderId": order_id})


def _read_ahead(pool: ThreadPoolExecutor, pages: Iterator[PageOfOrders]) -> Iterator[PageOfOrders]:
    """Yield ``pages`` while the next one is already being read in ``pool``."""
    pending = pool.submit(next, pages, None)
    while (page := pending.result()) is not None:
        pending = pool.submit(next, pages, None)
        yield page


def _new_run_id() -> str:
    """Return a run id that sorts by start time and is unique."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"
