"""What ``fanout status`` shows: one run's record and the latest runs."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from fanout.records import RunRecords
from fanout.stale import mark_interrupted_runs
from fanout.summary import COUNTS
from orders.schema import FANOUT_RUNS

LATEST_RUNS = 10


def latest_runs(
    client: firestore.Client, limit: int = LATEST_RUNS
) -> list[tuple[str, dict[str, Any]]]:
    """Return the ``limit`` most recently started runs, newest first."""
    query = (
        client.collection(FANOUT_RUNS)
        .order_by("startedAt", direction=firestore.Query.DESCENDING)
        .limit(limit)
    )
    return [(snapshot.id, snapshot.to_dict() or {}) for snapshot in query.stream()]


def format_run(run_id: str, record: dict[str, Any]) -> str:
    """Return one run record as lines a person reads."""
    totals = record.get("totals") or {}
    lines = [
        f"run {run_id}",
        f"  state       {record.get('state', '?')} (segment {record.get('segment', 0)})",
        f"  trigger     {record.get('trigger', '?')}",
        f"  started     {record.get('startedAt', '')}",
        f"  finished    {record.get('finishedAt', '') or '-'}",
        "  totals      " + "  ".join(f"{name} {totals.get(name, 0)}" for name in COUNTS),
    ]
    selection = record.get("selection") or {}
    if selection:
        chosen = {k: v for k, v in selection.items() if v not in (None, [], "")}
        lines.append("  selection   " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    checkpoint = record.get("checkpoint")
    if checkpoint:
        lines.append(
            f"  checkpoint  after order {checkpoint.get('orderId')} ({checkpoint.get('value')})"
        )
    if record.get("continuation"):
        lines.append(f"  continued   by task {record['continuation']}")
    if record.get("message"):
        lines.append(f"  message     {record['message']}")
    if record.get("error"):
        lines.append(f"  error       {record['error']}")
    failures = record.get("failures") or []
    lines.append(f"  failures    {len(failures)} listed")
    lines += [f"    {f.get('orderId')}: {f.get('reason')}" for f in failures]
    return "\n".join(lines)


def format_latest(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Return the latest runs as a table, newest first."""
    if not runs:
        return "no runs recorded yet"
    header = (
        f"{'run id':<28} {'trigger':<11} {'state':<11} {'orders':>8} {'created':>8} {'failed':>7}"
    )
    rows = [header]
    for run_id, record in runs:
        totals = record.get("totals") or {}
        rows.append(
            f"{run_id:<28} {record.get('trigger', ''):<11} {record.get('state', ''):<11} "
            f"{totals.get('orders', 0):>8} {totals.get('tasks_created', 0):>8} "
            f"{totals.get('failed', 0):>7}"
        )
    return "\n".join(rows)


def status_report(client: firestore.Client, run_id: str | None) -> str:
    """Return the report: the named run (raises RunNotFoundError), then the latest runs.

    Runs that died without an end record are marked ``interrupted`` first.
    """
    mark_interrupted_runs(client)
    parts = []
    if run_id:
        parts.append(format_run(run_id, RunRecords(client).load(run_id)))
    parts.append("latest runs:\n" + format_latest(latest_runs(client)))
    return "\n\n".join(parts)
