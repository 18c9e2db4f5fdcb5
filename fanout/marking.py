"""Mark fanned-out orders ``queued``, without ever undoing a worker's progress.

The worker may finish an order before fanout marks it, so each write carries a
precondition on the ``update_time`` the order was read at; the writes go in one
non-atomic BatchWrite call, so one failed precondition does not fail the rest.
Orders whose precondition failed are read again (one batched read) and the
round repeats: an order still in one of the run's selected statuses is marked,
a finished one keeps its status and only gains the ``fanout`` record. Nothing is
locked. The writes go through the official client's ``BulkWriteBatch``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch
from google.rpc import code_pb2

from fanout.errors import MarkingError
from orders.schema import OrderStatus

BATCH_WRITE_LIMIT = 500  # writes per BatchWrite call
MAX_ROUNDS = 10  # read-and-write rounds before giving up on orders that keep changing


def mark_queued(
    client: firestore.Client,
    orders: Sequence[firestore.DocumentSnapshot],
    fanout_fields: dict[str, Any],
    statuses: Collection[str] = (OrderStatus.PENDING.value,),
    generations: Mapping[str, int] | None = None,
    keep_status: Collection[str] = (),
    queue_counts: Mapping[str, int] | None = None,
) -> list[str]:
    """Set ``status = queued`` and ``fanout.*`` on each order still in ``statuses``.

    ``generations`` gives the task generation stored per order id (default: left
    as it is), ``queue_counts`` the size of the queue group its tasks went to
    (``fanout.queues``); orders in ``keep_status`` get only the ``fanout`` fields.

    Returns the ids of orders that kept changing for MAX_ROUNDS rounds and were
    left as they were (their tasks exist, so the next run deduplicates them).
    """
    given_up: list[str] = []
    for start in range(0, len(orders), BATCH_WRITE_LIMIT):
        chunk = list(orders[start : start + BATCH_WRITE_LIMIT])
        for _ in range(MAX_ROUNDS):
            changed = _write_round(
                client, chunk, fanout_fields, statuses, generations or {}, keep_status, queue_counts
            )
            if not changed:
                break
            chunk = list(client.get_all(changed))
        else:
            given_up.extend(snapshot.id for snapshot in chunk)
    return given_up


def _write_round(
    client: firestore.Client,
    snapshots: list[firestore.DocumentSnapshot],
    fanout_fields: dict[str, Any],
    statuses: Collection[str],
    generations: Mapping[str, int],
    keep_status: Collection[str],
    queue_counts: Mapping[str, int] | None = None,
) -> list[firestore.DocumentReference]:
    """Write each snapshot's update if it is unchanged; return the refs that had changed."""
    batch = BulkWriteBatch(client)
    # Dotted paths: fields under ``fanout`` that this run does not set stay as they are.
    common = {f"fanout.{key}": value for key, value in fanout_fields.items()}
    written = []
    for snapshot in snapshots:
        if not snapshot.exists:
            continue  # deleted meanwhile: nothing to mark
        status = _read(snapshot, "status")  # two fields, not a deep copy of the whole order
        fanout_update = dict(common)
        if snapshot.id in generations:
            fanout_update["fanout.generation"] = generations[snapshot.id]
        if queue_counts and snapshot.id in queue_counts:
            fanout_update["fanout.queues"] = queue_counts[snapshot.id]
        if status in statuses and snapshot.id in keep_status:
            update = fanout_update
        elif status in statuses:
            update = {"status": OrderStatus.QUEUED.value, **fanout_update}
        elif _read(snapshot, "fanout.runId") is None:  # finished first: still record the run
            update = fanout_update
        else:
            continue
        option = client.write_option(last_update_time=snapshot.update_time)
        batch.update(snapshot.reference, update, option=option)
        written.append(snapshot)
    if not written:
        return []
    changed = []
    response = batch.commit()
    for snapshot, status in zip(written, response.status, strict=True):
        if status.code == code_pb2.FAILED_PRECONDITION:
            changed.append(snapshot.reference)
        elif status.code != code_pb2.OK:
            raise MarkingError(f"marking order {snapshot.id} queued failed: {status.message}")
    return changed


def _read(snapshot: firestore.DocumentSnapshot, field_path: str) -> Any:
    """Return one field of the snapshot, or None when it (or a map above it) is missing."""
    try:
        return snapshot.get(field_path)
    except (KeyError, ValueError):
        return None
