"""Fan-out runs: page the selected orders, create their tasks, mark them queued.

The pages of a segment go through the pipeline of :mod:`fanout.page_flow`
(read ahead, created, marked, progress recorded).

A run holds the single-flight lease (:mod:`fanout.lease`); taking the lease, it
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.api_core.exceptions import GoogleAPIError
from google.cloud import firestore, tasks_v2

from fanout.config import FanoutConfig
from fanout.continuation import ContinuationRequest, continuation_task, enqueue_continuation
from fanout.enqueue import Enqueuer
from fanout.errors import FanoutError, LeaseHeldError
from fanout.lease import RunLease
from fanout.page_flow import MARKINGS_IN_FLIGHT, PageFlow, PageListener, Segment, read_ahead
from fanout.paging import pages
from fanout.planning import plan_page
from fanout.queue_group import QueueGroup
from fanout.records import RunRecords, checkpoint_of
from fanout.selection import Selection
from fanout.stale import mark_interrupted_runs
from fanout.summary import RunState, RunSummary
from orders.logs import TraceContext, bound_trace, current_trace
from orders.settings import CloudSettings

log = logging.getLogger(__name__)

BUDGET_PAGES = 2.0  # stop when fewer than this many of the slowest page fit in the budget
FINISHED_STATES = (RunState.FINISHED.value, RunState.SKIPPED.value)  # failed runs resume


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
        self.group = QueueGroup(db, config.cloud)

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
        segment = Segment(
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
        segment = Segment(
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
        group = self.group.load()
        for page in pages(self.db, selection, self._config.page_size):
            plan = plan_page(
                page.orders, selection, self._config.cloud, summary.run_id, queue_count=group
            )
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

    def _run_segment(self, segment: Segment, on_page: PageListener | None) -> RunSummary:
        """Run one segment to the end of the orders or to its budget; record the outcome.

        Its log records are under the run's trace, whichever request started it.
        """
        with bound_trace(segment.trace, self._config.cloud.project):
            return self._run_traced_segment(segment, on_page)

    def _run_traced_segment(self, segment: Segment, on_page: PageListener | None) -> RunSummary:
        summary = segment.summary
        try:
            self.group.load()
            out_of_time = self._run_pages(segment, on_page)
            if out_of_time:
                state = self._continue_later(segment)
            else:
                state = RunState.FINISHED
                summary.message = "every selected order was handled"
                self._adopt_group_size(segment)
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

    def _adopt_group_size(self, segment: Segment) -> None:
        """Adopt a resized queue group once a finished run makes it safe (fanout.queue_group)."""
        earlier = segment.record.get("totals") or {}
        failures = int(earlier.get("failed", 0)) + segment.summary.failed
        failures += len(segment.record.get("failures") or []) + len(segment.summary.failures)
        if self.group.adopt_after(segment.selection, failures):
            segment.summary.message += f"; the queue group now has {self.group.in_force} queues"

    def _end(self, segment: Segment, state: RunState, **extra: Any) -> None:
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

    def _continue_later(self, segment: Segment) -> RunState:
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

    def _run_pages(self, segment: Segment, on_page: PageListener | None) -> bool:
        """Page, create and mark, overlapping the three; True when stopped by the budget.

        While page N's tasks are being created, page N+1 is read (read-ahead) and
        page N-1 is marked; one page's creation is collected only after the next
        page's was submitted, so the creation calls never wait for the pages.
        """
        slowest_s = 0.0
        with ThreadPoolExecutor(1 + MARKINGS_IN_FLIGHT, thread_name_prefix="fanout-run") as pool:
            flow = PageFlow(self, segment, pool, on_page)
            source = pages(self.db, segment.selection, self._config.page_size, segment.checkpoint)
            out_of_time = False
            page_started = time.monotonic()
            for page in read_ahead(pool, source):  # the time per page includes waiting for it
                if self._out_of_time(segment, slowest_s):
                    out_of_time = True
                    break
                flow.create(page)
                now = time.monotonic()
                slowest_s = max(slowest_s, now - page_started)
                page_started = now
            flow.drain()
            return out_of_time

    def _out_of_time(self, segment: Segment, slowest_page_s: float) -> bool:
        """Tell whether the next page may not fit the budget (never before one page is done)."""
        if segment.budget_s <= 0 or segment.summary.pages == 0:
            return False
        left_s = segment.budget_s - (time.monotonic() - segment.started)
        return left_s < BUDGET_PAGES * slowest_page_s


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
