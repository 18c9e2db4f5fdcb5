"""What ``fanout status`` shows: one run's record, the latest runs and the queue group."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from fanout.queue_group import QUEUE_GROUPS
from fanout.ramp import ramp_states
from fanout.records import RunRecords
from fanout.stale import mark_interrupted_runs
from fanout.summary import COUNTS
from orders.schema import FANOUT_RUNS
from orders.settings import CloudSettings

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


def format_queues(cloud: CloudSettings, group: dict[str, Any], ramps: list[dict[str, Any]]) -> str:
    """Return the queue group: its size, and per queue the tasks sent and the ramp's rate."""
    in_force = group.get("size", cloud.queue_count)
    lines = [f"queue group {cloud.queue}: {cloud.queue_count} queues configured"]
    if in_force != cloud.queue_count:
        lines.append(
            f"  {in_force} queues still in force: the resize is adopted after the next run "
            "over every pending order that finishes with no failure"
        )
    by_id = {ramp["queueId"]: ramp for ramp in ramps}
    shown = list(dict.fromkeys([*cloud.queue_ids, *sorted(by_id)]))
    lines.append(f"  {'queue':<28} {'tasks sent':>10} {'rate/s':>9}  last creation")
    for queue_id in shown:
        ramp = by_id.get(queue_id, {})
        rate = ramp.get("ratePerSecond")
        lines.append(
            f"  {queue_id:<28} {int(ramp.get('sent', 0)):>10} "
            f"{'-' if rate is None else f'{rate:.0f}':>9}  {ramp.get('lastCreateAt') or '-'}"
        )
    return "\n".join(lines)


def status_report(
    client: firestore.Client, run_id: str | None, cloud: CloudSettings | None = None
) -> str:
    """Return the report: the named run (raises RunNotFoundError), the latest runs, the queues.

    The queue part shows ``cloud``'s group (default: ``CloudSettings()``); its counts
    are the tasks the fanout sent to each queue to create (from the ramps' records).
    Runs that died without an end record are marked ``interrupted`` first.
    """
    cloud = cloud or CloudSettings()
    mark_interrupted_runs(client)
    parts = []
    if run_id:
        parts.append(format_run(run_id, RunRecords(client).load(run_id)))
    parts.append("latest runs:\n" + format_latest(latest_runs(client)))
    group = client.collection(QUEUE_GROUPS).document(cloud.queue).get().to_dict() or {}
    parts.append(format_queues(cloud, group, ramp_states(client)))
    return "\n\n".join(parts)
