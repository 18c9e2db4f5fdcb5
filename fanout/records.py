"""Run records: one ``fanout_runs/{runId}`` document per run, across its segments.

The record holds the trigger, the selection, start and end times, the running
totals, the failures, the cursor checkpoint and the continuation. Totals are
written as absolute values (earlier segments' totals plus this segment's), so a
retried write never double counts.
"""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from fanout.errors import RunNotFoundError
from fanout.selection import Cursor, Selection
from fanout.summary import COUNTS, MAX_LISTED_FAILURES, RunState, RunSummary
from orders.schema import FANOUT_RUNS


class RunRecords:
    """Reads and writes run records with one Firestore client."""

    def __init__(self, client: firestore.Client) -> None:
        """Use ``client`` for the ``fanout_runs`` collection."""
        self._runs = client.collection(FANOUT_RUNS)

    def create(self, run_id: str, trigger: str, selection: Selection, trace_id: str = "") -> None:
        """Write the record of a run that is starting, with the trace its logs are under."""
        self._runs.document(run_id).set(
            {
                "trigger": trigger,
                "selection": selection.to_record(),
                "startedAt": firestore.SERVER_TIMESTAMP,
                "state": RunState.RUNNING.value,
                "segment": 0,
                "totals": dict.fromkeys(COUNTS, 0),
                "failures": [],
                "checkpoint": None,
                "traceId": trace_id,
            }
        )

    def load(self, run_id: str) -> dict[str, Any]:
        """Return a run's record, or raise :class:`RunNotFoundError`."""
        snapshot = self._runs.document(run_id).get()
        if not snapshot.exists:
            raise RunNotFoundError(
                f"no run {run_id!r} in {FANOUT_RUNS}; `fanout status` lists the latest runs"
            )
        return snapshot.to_dict() or {}

    def progress(
        self,
        summary: RunSummary,
        earlier: dict[str, Any],
        checkpoint: Cursor | None,
        state: RunState = RunState.RUNNING,
        checkpoint_counts: dict[str, int] | None = None,
        **extra: Any,
    ) -> None:
        """Store totals (``earlier`` record plus ``summary``), the checkpoint and ``state``.

        ``checkpoint_counts`` are this segment's counts up to the checkpoint
        (default: all of them); stored as ``checkpointTotals``, they are what a
        segment resuming at the checkpoint starts from, so pages done after the
        checkpoint by a segment that crashed are not counted twice.
        """
        previous = earlier.get("checkpointTotals") or earlier.get("totals") or {}
        totals = _add(previous, summary.counts())
        at_checkpoint = _add(previous, checkpoint_counts or summary.counts())
        failures = (list(earlier.get("failures") or []) + summary.failures)[:MAX_LISTED_FAILURES]
        fields: dict[str, Any] = {
            "state": state.value,
            "segment": summary.segment,
            "totals": totals,
            "checkpointTotals": at_checkpoint,
            "failures": failures,
            "checkpoint": _cursor_record(checkpoint),
            "updatedAt": firestore.SERVER_TIMESTAMP,
            **extra,
        }
        if state is not RunState.RUNNING:
            fields["segmentSeconds"] = summary.seconds
            if state is not RunState.CONTINUING:
                fields["finishedAt"] = firestore.SERVER_TIMESTAMP
        self._runs.document(summary.run_id).set(fields, merge=True)

    def skipped(self, run_id: str, trigger: str, reason: str) -> None:
        """Record a run that did not start because another held the lease."""
        self._runs.document(run_id).set(
            {
                "trigger": trigger,
                "state": RunState.SKIPPED.value,
                "message": reason,
                "startedAt": firestore.SERVER_TIMESTAMP,
                "finishedAt": firestore.SERVER_TIMESTAMP,
            }
        )


def checkpoint_of(record: dict[str, Any]) -> Cursor | None:
    """Return the cursor a run's record was checkpointed at (``None``: from the start)."""
    checkpoint = record.get("checkpoint")
    if not checkpoint:
        return None
    return [checkpoint.get("value"), checkpoint["orderId"]]


def _add(previous: dict[str, Any], counts: dict[str, int]) -> dict[str, int]:
    return {k: int(previous.get(k, 0)) + v for k, v in counts.items()}


def _cursor_record(cursor: Cursor | None) -> dict[str, Any] | None:
    if cursor is None:
        return None
    return {"value": cursor[0], "orderId": cursor[1]}
