"""The pipeline of one segment of a fan-out run: pages read, created and marked, overlapping.

Reading the next page overlaps creating the current page's tasks, and marking
pages ``queued`` overlaps the next pages' creation; at most one page is read
ahead, two are being created and MARKINGS_IN_FLIGHT are being marked, so memory
stays flat whatever the backlog. Progress (counts and the cursor checkpoint) is
recorded whenever a page has been marked, and at least every
PROGRESS_INTERVAL_S while pages are being created.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.cloud import firestore

from fanout.enqueue import Created, PendingCreation
from fanout.lease import RunLease
from fanout.marking import mark_queued
from fanout.paging import Page
from fanout.planning import PagePlan, plan_page
from fanout.selection import Cursor, Selection
from fanout.summary import RunSummary
from orders.logs import TraceContext

if TYPE_CHECKING:
    from fanout.run import FanoutRunner

PageListener = Callable[[RunSummary], None]
MARKINGS_IN_FLIGHT = 8  # pages being marked queued at once
PROGRESS_INTERVAL_S = 1.0  # a running segment writes its progress about this often, seconds


@dataclass
class Segment:
    """One segment in progress: its summary, the run record as it was, its lease."""

    summary: RunSummary
    selection: Selection
    record: dict[str, Any]
    lease: RunLease | None
    checkpoint: Cursor | None
    started: float
    budget_s: float
    trace: TraceContext  # every task of the run carries it; its logs are under it
    checkpoint_counts: dict[str, int] | None = None  # this segment's counts at the checkpoint


class PageFlow:
    """The pipeline of one segment: creations collected one page late, marking behind them."""

    def __init__(
        self,
        runner: FanoutRunner,
        segment: Segment,
        pool: ThreadPoolExecutor,
        on_page: PageListener | None,
    ) -> None:
        self._runner = runner
        self._segment = segment
        self._pool = pool
        self._on_page = on_page
        self._trace_headers = segment.trace.headers()
        self._fields = {"runId": segment.summary.run_id, "queuedAt": firestore.SERVER_TIMESTAMP}
        self._creating: tuple[Page, PagePlan, PendingCreation] | None = None
        self._markings: deque[tuple[Future[list[str]], Page, dict[str, int]]] = deque()
        self._renewed_at = time.monotonic()
        self._recorded_at = time.monotonic()

    def create(self, page: Page) -> None:
        """Start creating ``page``'s tasks, then collect the previous page's creations."""
        summary = self._segment.summary
        plan = plan_page(
            page.orders,
            self._segment.selection,
            self._runner.cloud,
            summary.run_id,
            self._trace_headers,
            self._runner.group.in_force,
        )
        pending = self._runner.enqueuer.submit(plan.tasks)
        self._renew_lease_if_due()
        if self._creating is not None:
            self._collect(*self._creating)
        summary.pages += 1  # after the previous page's counts were taken for its checkpoint
        summary.orders += len(page.orders)
        self._creating = (page, plan, pending)
        while self._markings and self._markings[0][0].done():  # without waiting
            self._marked(*self._markings.popleft())
        self._record_progress(due_only=True)

    def drain(self) -> None:
        """Collect the last creations and wait for the last marking."""
        if self._creating is not None:
            self._collect(*self._creating)
            self._creating = None
        while self._markings:
            self._marked(*self._markings.popleft())

    def _collect(self, page: Page, plan: PagePlan, pending: PendingCreation) -> None:
        """Count a page's creations and start marking the orders whose every task exists."""
        summary = self._segment.summary
        broken = dict(plan.broken)
        summary.failed += len(plan.broken)  # orders that could not form their tasks
        for owner, result in zip(plan.owners, pending.results(), strict=True):
            if result.outcome is Created.CREATED:
                summary.tasks_created += 1
            elif result.outcome is Created.DEDUPLICATED:
                summary.deduplicated += 1
            else:
                summary.failed += 1
                broken.setdefault(owner, result.reason)
        for order_id, reason in broken.items():
            summary.add_failure(order_id, reason)
        ready = [s for s in page.orders if s.id not in broken]
        statuses = self._segment.selection.statuses
        db = self._runner.db
        future = self._pool.submit(
            mark_queued,
            db,
            ready,
            self._fields,
            statuses,
            plan.generations,
            plan.partial,
            plan.queue_counts,
        )
        summary.queued += sum(1 for s in ready if s.id not in plan.partial)
        self._markings.append((future, page, summary.counts()))
        while len(self._markings) > MARKINGS_IN_FLIGHT:  # in page order: checkpoints only grow
            self._marked(*self._markings.popleft())

    def _renew_lease_if_due(self) -> None:
        """Renew the lease once a third of it has passed (LeaseLostError if it was taken)."""
        lease = self._segment.lease
        if lease is not None and time.monotonic() - self._renewed_at >= lease.duration_s / 3:
            lease.renew()
            self._renewed_at = time.monotonic()

    def _marked(self, marking: Future[list[str]], page: Page, counts: dict[str, int]) -> None:
        """Collect a page's marking, then checkpoint past it and renew the lease.

        ``counts`` are the segment's counts once this page's creations were counted.
        """
        segment = self._segment
        summary = segment.summary
        unmarked = marking.result()
        summary.queued -= len(unmarked)
        counts["queued"] -= len(unmarked)
        for order_id in unmarked:
            summary.add_failure(order_id, "kept changing while being marked queued; left as is")
        segment.checkpoint = page.cursor
        segment.checkpoint_counts = counts
        self._renew_lease_if_due()
        self._record_progress()
        if self._on_page is not None:
            self._on_page(summary)

    def _record_progress(self, due_only: bool = False) -> None:
        """Write the counts and the checkpoint (``due_only``: if PROGRESS_INTERVAL_S has passed)."""
        now = time.monotonic()
        if due_only and now - self._recorded_at < PROGRESS_INTERVAL_S:
            return
        segment = self._segment
        segment.summary.seconds = round(now - segment.started, 3)
        self._runner.records.progress(
            segment.summary,
            segment.record,
            segment.checkpoint,
            checkpoint_counts=segment.checkpoint_counts,
        )
        self._recorded_at = now


def read_ahead(pool: ThreadPoolExecutor, source: Iterator[Page]) -> Iterator[Page]:
    """Yield pages from ``source`` while the next one is already being read in ``pool``."""
    pending = pool.submit(next, source, None)
    while (page := pending.result()) is not None:
        pending = pool.submit(next, source, None)
        yield page
