"""Fan-out runs: page the selected orders, create their tasks, mark them queued.

Reading the next page overlaps creating the current page's tasks, and marking a
page ``queued`` overlaps the next page's creation; at most one page is read
ahead and one is being marked, so memory stays flat whatever the backlog.

A run holds the single-flight lease (:mod:`fanout.lease`) and checkpoints its
cursor in its run record after every page. When it nears its time budget it
stops between pages, hands the lease to its next segment and enqueues a
continuation task (:mod:`fanout.continuation`), which picks up at the checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore, tasks_v2

from fanout.config import FanoutConfig
from fanout.continuation import ContinuationRequest, enqueue_continuation
from fanout.enqueue import Created, Enqueuer
from fanout.errors import LeaseHeldError
from fanout.lease import RunLease
from fanout.marking import mark_queued
from fanout.paging import Page, pages
from fanout.planning import plan_page
from fanout.records import RunRecords, checkpoint_of
from fanout.selection import Cursor, Selection
from fanout.summary import RunState, RunSummary

log = logging.getLogger(__name__)

PageListener = Callable[[RunSummary], None]
BUDGET_PAGES = 2.0  # stop when fewer than this many of the slowest page fit in the budget
FINISHED_STATES = (RunState.FINISHED.value, RunState.SKIPPED.value)  # failed runs resume


@dataclass
class _Segment:
    """One segment in progress: its summary, the run record as it was, its lease."""

    summary: RunSummary
    selection: Selection
    record: dict[str, Any]
    lease: RunLease | None
    checkpoint: Cursor | None
    started: float
    budget_s: float


class FanoutRunner:
    """Runs fan-outs with clients built once by the caller."""

    def __init__(
        self,
        db: firestore.Client,
        tasks: tasks_v2.CloudTasksClient,
        enqueuer: Enqueuer,
        config: FanoutConfig,
    ) -> None:
        """Fan out orders from ``db`` through ``enqueuer`` as ``config`` says."""
        self._db = db
        self._tasks = tasks
        self._enqueuer = enqueuer
        self._config = config
        self._records = RunRecords(db)

    def run(
        self,
        trigger: str,
        selection: Selection | None = None,
        budget_s: float | None = None,
        on_page: PageListener | None = None,
    ) -> RunSummary:
        """Start a new run over ``selection`` (default: every pending order).

        ``budget_s`` (seconds; default from the configuration, 0 for none) bounds
        this first segment. A run refused the lease is recorded as skipped.
        """
        selection = selection or Selection()
        summary = RunSummary(run_id=new_run_id(), trigger=trigger)
        lease = RunLease(self._db, summary.run_id, self._config.lease_s)
        try:
            lease.acquire(0)
        except LeaseHeldError as exc:
            return self._skipped(summary, str(exc))
        self._records.create(summary.run_id, trigger, selection)
        segment = _Segment(
            summary, selection, {}, lease, None, time.monotonic(), self._budget(budget_s)
        )
        return self._run_segment(segment, on_page)

    def resume(
        self,
        run_id: str,
        segment_no: int | None = None,
        budget_s: float | None = None,
        on_page: PageListener | None = None,
    ) -> RunSummary:
        """Continue run ``run_id`` from its checkpoint as ``segment_no`` (default: the next).

        A continuation names its segment, so a redelivered one that finds the run
        already past it, or finished, changes nothing. Raises
        :class:`LeaseHeldError` while another segment or run holds the lease.
        """
        record = self._records.load(run_id)
        number = int(record.get("segment", 0)) + 1 if segment_no is None else segment_no
        summary = RunSummary(run_id, str(record.get("trigger", "")), segment=number)
        if record.get("state") in FINISHED_STATES or int(record.get("segment", 0)) >= number:
            summary.state = str(record.get("state", ""))
            summary.message = f"run {run_id} is {summary.state} at segment {record.get('segment')}"
            return summary
        lease = RunLease(self._db, run_id, self._config.lease_s)
        lease.acquire(number)
        segment = _Segment(
            summary,
            Selection.from_record(record.get("selection") or {}),
            record,
            lease,
            checkpoint_of(record),
            time.monotonic(),
            self._budget(budget_s),
        )
        return self._run_segment(segment, on_page)

    def count(self, selection: Selection) -> int:
        """Return how many orders ``selection`` holds now (one aggregation query)."""
        return int(selection.query(self._db).count().get()[0][0].value)

    def dry_run(self, selection: Selection, on_page: PageListener | None = None) -> RunSummary:
        """Count the orders and tasks a run over ``selection`` would create; write nothing."""
        summary = RunSummary(run_id="dry-run", trigger="dry-run", state=RunState.DRY_RUN.value)
        started = time.monotonic()
        for page in pages(self._db, selection, self._config.page_size):
            plan = plan_page(page.orders, selection, self._config.cloud, summary.run_id)
            summary.pages += 1
            summary.orders += len(page.orders)
            summary.tasks_created += len(plan.tasks)
            for order_id, reason in plan.broken.items():
                summary.failed += 1
                summary.add_failure(order_id, reason)
            if on_page is not None:
                on_page(summary)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def _budget(self, budget_s: float | None) -> float:
        return self._config.time_budget_s if budget_s is None else budget_s

    def _skipped(self, summary: RunSummary, reason: str) -> RunSummary:
        summary.state = RunState.SKIPPED.value
        summary.message = reason
        self._records.skipped(summary.run_id, summary.trigger, reason)
        log.warning("fan-out skipped: %s", reason, extra={"runId": summary.run_id})
        return summary

    def _run_segment(self, segment: _Segment, on_page: PageListener | None) -> RunSummary:
        """Run one segment to the end of the orders or to its budget; record the outcome."""
        summary = segment.summary
        try:
            out_of_time = self._run_pages(segment, on_page)
            if out_of_time:
                state = self._continue_later(segment)
            else:
                state = RunState.FINISHED
                summary.message = "every selected order was handled"
        except Exception as exc:
            summary.state = RunState.FAILED.value
            summary.message = repr(exc)
            self._end(segment, RunState.FAILED, error=repr(exc))
            raise
        self._end(segment, state)
        log.info("fan-out segment ended", extra={"runId": summary.run_id, **summary.to_dict()})
        return summary

    def _end(self, segment: _Segment, state: RunState, **extra: Any) -> None:
        summary = segment.summary
        summary.state = state.value
        summary.seconds = round(time.monotonic() - segment.started, 3)
        if segment.lease is not None and state is not RunState.CONTINUING:
            segment.lease.release()
        self._records.progress(
            summary, segment.record, segment.checkpoint, state, message=summary.message, **extra
        )

    def _continue_later(self, segment: _Segment) -> RunState:
        """Hand over to the next segment: a continuation task, or a plain stop."""
        summary = segment.summary
        if not self._config.fanout_url:
            summary.message = "time budget reached; set FANOUT_URL to continue automatically"
            return RunState.STOPPED
        request = ContinuationRequest(summary.run_id, summary.segment + 1)
        assert segment.lease is not None  # a dry run never gets here
        segment.lease.hand_off(request.segment, self._config.lease_s)
        summary.continuation = enqueue_continuation(self._tasks, self._config, request)
        summary.message = f"time budget reached; segment {request.segment} continues"
        return RunState.CONTINUING

    def _run_pages(self, segment: _Segment, on_page: PageListener | None) -> bool:
        """Page, create and mark, overlapping the three; True when stopped by the budget."""
        summary, selection = segment.summary, segment.selection
        fields = {"runId": summary.run_id, "queuedAt": firestore.SERVER_TIMESTAMP}
        slowest_s = 0.0
        with ThreadPoolExecutor(2, thread_name_prefix="fanout-run") as pool:
            marking: tuple[Future[list[str]], Page] | None = None
            source = pages(self._db, selection, self._config.page_size, segment.checkpoint)
            for page in _read_ahead(pool, source):
                if self._out_of_time(segment, slowest_s):
                    break
                page_started = time.monotonic()
                ready, generations = self._fan_out_page(page, segment)
                if marking is not None:
                    self._marked(segment, *marking, on_page)
                future = pool.submit(
                    mark_queued, self._db, ready, fields, selection.statuses, generations
                )
                marking = (future, page)
                summary.queued += len(ready)
                slowest_s = max(slowest_s, time.monotonic() - page_started)
            else:
                if marking is not None:
                    self._marked(segment, *marking, on_page)
                return False
            if marking is not None:
                self._marked(segment, *marking, on_page)
            return True

    def _out_of_time(self, segment: _Segment, slowest_page_s: float) -> bool:
        """Tell whether the next page may not fit the budget (never before one page is done)."""
        if segment.budget_s <= 0 or segment.summary.pages == 0:
            return False
        left_s = segment.budget_s - (time.monotonic() - segment.started)
        return left_s < BUDGET_PAGES * slowest_page_s

    def _marked(
        self,
        segment: _Segment,
        marking: Future[list[str]],
        page: Page,
        on_page: PageListener | None,
    ) -> None:
        """Collect a page's marking, then checkpoint past it and renew the lease."""
        summary = segment.summary
        unmarked = marking.result()
        summary.queued -= len(unmarked)
        for order_id in unmarked:
            summary.add_failure(order_id, "kept changing while being marked queued; left as is")
        segment.checkpoint = page.cursor
        summary.seconds = round(time.monotonic() - segment.started, 3)
        if segment.lease is not None:
            segment.lease.renew()
        self._records.progress(summary, segment.record, segment.checkpoint)
        if on_page is not None:
            on_page(summary)

    def _fan_out_page(self, page: Page, segment: _Segment) -> tuple[list[Any], dict[str, int]]:
        """Create the page's tasks; return the orders whose every task exists, and generations."""
        summary = segment.summary
        summary.pages += 1
        summary.orders += len(page.orders)
        plan = plan_page(page.orders, segment.selection, self._config.cloud, summary.run_id)
        broken = dict(plan.broken)
        for owner, result in zip(plan.owners, self._enqueuer.enqueue(plan.tasks), strict=True):
            if result.outcome is Created.CREATED:
                summary.tasks_created += 1
            elif result.outcome is Created.DEDUPLICATED:
                summary.deduplicated += 1
            else:
                summary.failed += 1
                broken.setdefault(owner, result.reason)
        for order_id, reason in broken.items():
            if order_id in plan.broken:
                summary.failed += 1  # an order that could not form its tasks
            summary.add_failure(order_id, reason)
        return [s for s in page.orders if s.id not in broken], plan.generations


def _read_ahead(pool: ThreadPoolExecutor, source: Iterator[Page]) -> Iterator[Page]:
    """Yield pages from ``source`` while the next one is already being read in ``pool``."""
    pending = pool.submit(next, source, None)
    while (page := pending.result()) is not None:
        pending = pool.submit(next, source, None)
        yield page


def new_run_id() -> str:
    """Return a run id that sorts by start time and is unique."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"
