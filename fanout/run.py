"""Fan-out runs: page the selected orders, create their tasks, mark them queued.

Reading the next page overlaps creating the current page's tasks, and marking
pages ``queued`` overlaps the next pages' creation; at most one page is read
ahead, two are being created and MARKINGS_IN_FLIGHT are being marked, so memory
stays flat whatever the backlog.

A run holds the single-flight lease (:mod:`fanout.lease`) and records its
progress (counts and the cursor checkpoint) whenever a page has been marked, and
at least every PROGRESS_INTERVAL_S while pages are being created; taking the lease, it
marks runs that died without an end record ``interrupted`` (:mod:`fanout.stale`).
When it nears its time budget it stops between pages, hands the lease to its
next segment and enqueues a continuation task (:mod:`fanout.continuation`),
which picks up at the checkpoint.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from google.api_core.exceptions import GoogleAPIError
from google.cloud import firestore, tasks_v2

from fanout.config import FanoutConfig
from fanout.continuation import ContinuationRequest, continuation_task, enqueue_continuation
from fanout.enqueue import Created, Enqueuer, PendingCreation
from fanout.errors import FanoutError, LeaseHeldError
from fanout.lease import RunLease
from fanout.marking import mark_queued
from fanout.paging import Page, pages
from fanout.planning import PagePlan, plan_page
from fanout.records import RunRecords, checkpoint_of
from fanout.selection import Cursor, Selection
from fanout.stale import mark_interrupted_runs
from fanout.summary import RunState, RunSummary
from orders.logs import TraceContext, bound_trace, current_trace
from orders.settings import CloudSettings

log = logging.getLogger(__name__)

PageListener = Callable[[RunSummary], None]
MARKINGS_IN_FLIGHT = 8  # pages being marked queued at once
PROGRESS_INTERVAL_S = 1.0  # a running segment writes its progress about this often, seconds
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
    trace: TraceContext  # every task of the run carries it; its logs are under it
    checkpoint_counts: dict[str, int] | None = None  # this segment's counts at the checkpoint


class FanoutRunner:
    """Runs fan-outs with clients built once by the caller."""

    def __init__(
        self,
        db: firestore.Client,
        tasks: tasks_v2.CloudTasksClient,
        enqueuer: Enqueuer,
        config: FanoutConfig,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        """Fan out orders from ``db`` through ``enqueuer`` as ``config`` says.

        ``clock`` gives the current UTC time the run lease expires by (default: the real one).
        """
        self.db = db
        self._clock = clock
        self._tasks = tasks
        self.enqueuer = enqueuer
        self._config = config
        self.records = RunRecords(db)

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
        trace = current_trace() or TraceContext.new()
        lease = RunLease(self.db, summary.run_id, self._config.lease_s, clock=self._clock)
        try:
            lease.acquire(0)
        except LeaseHeldError as exc:
            return self._skipped(summary, str(exc))
        self._mark_interrupted()
        try:
            self.records.create(summary.run_id, trigger, selection, trace.trace_id)
        except BaseException:
            lease.release()
            raise
        segment = _Segment(
            summary, selection, {}, lease, None, time.monotonic(), self._budget(budget_s), trace
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

        A continuation names its segment, so a redelivered one that finds that
        segment completed, or the run finished, changes nothing; one whose segment
        crashed part-way takes it over from its checkpoint once its lease has
        expired. Raises :class:`LeaseHeldError` while another segment or run
        holds the lease.
        """
        record = self.records.load(run_id)
        completed = int(record.get("completedSegment", -1))
        number = completed + 1 if segment_no is None else segment_no
        summary = RunSummary(run_id, str(record.get("trigger", "")), segment=number)
        if record.get("state") in FINISHED_STATES or completed >= number:
            summary.state = str(record.get("state", ""))
            summary.message = f"run {run_id} is {summary.state}; segment {completed} completed"
            return summary
        lease = RunLease(self.db, run_id, self._config.lease_s, clock=self._clock)
        lease.acquire(number)
        segment = _Segment(
            summary,
            Selection.from_record(record.get("selection") or {}),
            record,
            lease,
            checkpoint_of(record),
            time.monotonic(),
            self._budget(budget_s),
            _run_trace(record),
        )
        return self._run_segment(segment, on_page)

    def count(self, selection: Selection) -> int:
        """Return how many orders ``selection`` holds now (one aggregation query)."""
        return int(selection.query(self.db).count().get()[0][0].value)

    def dry_run(self, selection: Selection, on_page: PageListener | None = None) -> RunSummary:
        """Count the orders and tasks a run over ``selection`` would create; write nothing."""
        summary = RunSummary(run_id="dry-run", trigger="dry-run", state=RunState.DRY_RUN.value)
        started = time.monotonic()
        for page in pages(self.db, selection, self._config.page_size):
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

    @property
    def cloud(self) -> CloudSettings:
        """Where the tasks go (the queue, the worker)."""
        return self._config.cloud

    def _mark_interrupted(self) -> None:
        """Mark runs that died without an end record (we hold the lease: none is alive)."""
        try:
            mark_interrupted_runs(self.db)
        except GoogleAPIError:
            log.warning("could not check for interrupted runs", exc_info=True)

    def _budget(self, budget_s: float | None) -> float:
        return self._config.time_budget_s if budget_s is None else budget_s

    def _skipped(self, summary: RunSummary, reason: str) -> RunSummary:
        summary.state = RunState.SKIPPED.value
        summary.message = reason
        self.records.skipped(summary.run_id, summary.trigger, reason)
        log.warning("fan-out skipped: %s", reason, extra={"runId": summary.run_id})
        return summary

    def _run_segment(self, segment: _Segment, on_page: PageListener | None) -> RunSummary:
        """Run one segment to the end of the orders or to its budget; record the outcome.

        Its log records are under the run's trace, whichever request started it.
        """
        with bound_trace(segment.trace, self._config.cloud.project):
            return self._run_traced_segment(segment, on_page)

    def _run_traced_segment(self, segment: _Segment, on_page: PageListener | None) -> RunSummary:
        summary = segment.summary
        try:
            out_of_time = self._run_pages(segment, on_page)
            if out_of_time:
                state = self._continue_later(segment)
            else:
                state = RunState.FINISHED
                summary.message = "every selected order was handled"
        except BaseException as exc:  # Ctrl-C in the CLI too: record it, free the lease
            summary.state = RunState.FAILED.value
            summary.message = repr(exc)
            self._end(segment, RunState.FAILED, error=repr(exc))
            raise
        if state is not RunState.CONTINUING:  # a continuing segment recorded itself already
            self._end(segment, state)
        log.info(
            "fan-out segment ended: %s",
            summary.message,
            extra={
                "runId": summary.run_id,
                "segment": summary.segment,
                "state": summary.state,
                "seconds": summary.seconds,
                **summary.counts(),
            },
        )
        return summary

    def _end(self, segment: _Segment, state: RunState, **extra: Any) -> None:
        """Record how the segment ended, then free the lease (unless handed over)."""
        summary = segment.summary
        summary.state = state.value
        summary.seconds = round(time.monotonic() - segment.started, 3)
        if summary.continuation:
            extra["continuation"] = summary.continuation
        if state is not RunState.FAILED:
            extra["completedSegment"] = summary.segment
        try:
            self.records.progress(
                summary,
                segment.record,
                segment.checkpoint,
                state,
                checkpoint_counts=segment.checkpoint_counts,
                message=summary.message,
                **extra,
            )
        finally:
            if segment.lease is not None and state is not RunState.CONTINUING:
                segment.lease.release()

    def _continue_later(self, segment: _Segment) -> RunState:
        """Hand over to the next segment: a continuation task, or a plain stop.

        The record says ``continuing`` before the continuation exists, so the next
        segment never finds (or has its progress overwritten by) an older record.
        """
        summary = segment.summary
        if not self._config.fanout_url:
            summary.message = "time budget reached; set FANOUT_URL to continue automatically"
            return RunState.STOPPED
        request = ContinuationRequest(summary.run_id, summary.segment + 1)
        summary.continuation = continuation_task(self._config, request).name
        summary.message = f"time budget reached; segment {request.segment} continues"
        self._end(segment, RunState.CONTINUING)
        assert segment.lease is not None  # a dry run never gets here
        try:
            segment.lease.hand_off(request.segment, self._config.lease_s)
            enqueue_continuation(self._tasks, self._config, request, segment.trace.headers())
        except (FanoutError, GoogleAPIError) as exc:
            # The rest stays pending: the next scheduled run (or --resume) takes it.
            summary.continuation = ""
            summary.message = f"time budget reached; the continuation failed: {exc}"
            return RunState.STOPPED
        return RunState.CONTINUING

    def _run_pages(self, segment: _Segment, on_page: PageListener | None) -> bool:
        """Page, create and mark, overlapping the three; True when stopped by the budget.

        While page N's tasks are being created, page N+1 is read (read-ahead) and
        page N-1 is marked; one page's creation is collected only after the next
        page's was submitted, so the creation calls never wait for the pages.
        """
        slowest_s = 0.0
        with ThreadPoolExecutor(1 + MARKINGS_IN_FLIGHT, thread_name_prefix="fanout-run") as pool:
            flow = _PageFlow(self, segment, pool, on_page)
            source = pages(self.db, segment.selection, self._config.page_size, segment.checkpoint)
            out_of_time = False
            page_started = time.monotonic()
            for page in _read_ahead(pool, source):  # the time per page includes waiting for it
                if self._out_of_time(segment, slowest_s):
                    out_of_time = True
                    break
                flow.create(page)
                now = time.monotonic()
                slowest_s = max(slowest_s, now - page_started)
                page_started = now
            flow.drain()
            return out_of_time

    def _out_of_time(self, segment: _Segment, slowest_page_s: float) -> bool:
        """Tell whether the next page may not fit the budget (never before one page is done)."""
        if segment.budget_s <= 0 or segment.summary.pages == 0:
            return False
        left_s = segment.budget_s - (time.monotonic() - segment.started)
        return left_s < BUDGET_PAGES * slowest_page_s


class _PageFlow:
    """The pipeline of one segment: creations collected one page late, marking behind them."""

    def __init__(
        self,
        runner: FanoutRunner,
        segment: _Segment,
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
            mark_queued, db, ready, self._fields, statuses, plan.generations, plan.partial
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


def _read_ahead(pool: ThreadPoolExecutor, source: Iterator[Page]) -> Iterator[Page]:
    """Yield pages from ``source`` while the next one is already being read in ``pool``."""
    pending = pool.submit(next, source, None)
    while (page := pending.result()) is not None:
        pending = pool.submit(next, source, None)
        yield page


def _run_trace(record: dict[str, Any]) -> TraceContext:
    """Return the trace a resumed run goes on under: its record's, in this request's span."""
    request = current_trace()
    trace_id = str(record.get("traceId") or "")
    if not trace_id:
        return request or TraceContext.new()
    if request is not None and request.trace_id == trace_id:
        return request
    return TraceContext(trace_id, TraceContext.new().span_id, False)


def new_run_id() -> str:
    """Return a run id that sorts by start time and is unique."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"
