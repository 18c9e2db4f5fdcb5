"""Mark fanned-out orders ``queued``, without ever undoing a worker's progress.

The worker may finish an order before fanout marks it, so each write carries a
precondition on the ``update_time`` the page was read at; the writes go in one
non-atomic BatchWrite call, so one failed precondition does not fail the rest.
An order whose precondition failed is re-read in a transaction and marked only
if it is still ``pending``; a finished one keeps its status and only gains the
``fanout`` record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch
from google.rpc import code_pb2

from fanout.errors import MarkingError
from orders.schema import OrderStatus

BATCH_WRITE_LIMIT = 500  # writes per BatchWrite call


def mark_queued(
    client: firestore.Client,
    orders: Sequence[firestore.DocumentSnapshot],
    fanout_fields: dict[str, Any],
) -> None:
    """Set ``status = queued`` and ``fanout = fanout_fields`` on each still-pending order."""
    update = {"status": OrderStatus.QUEUED.value, "fanout": fanout_fields}
    for start in range(0, len(orders), BATCH_WRITE_LIMIT):
        chunk = orders[start : start + BATCH_WRITE_LIMIT]
        batch = BulkWriteBatch(client)
        for snapshot in chunk:
            option = client.write_option(last_update_time=snapshot.update_time)
            batch.update(snapshot.reference, update, option=option)
        response = batch.commit()
        for snapshot, status in zip(chunk, response.status, strict=True):
            if status.code == code_pb2.FAILED_PRECONDITION:
                _mark_if_pending(client.transaction(), snapshot.reference, update)
            elif status.code != code_pb2.OK:
                raise MarkingError(f"marking {snapshot.id} queued failed: {status.message}")


@firestore.transactional  # type: ignore[untyped-decorator]
def _mark_if_pending(
    transaction: firestore.Transaction,
    ref: firestore.DocumentReference,
    update: dict[str, Any],
) -> None:
    snapshot = ref.get(transaction=transaction)
    order = snapshot.to_dict() if snapshot.exists else None
    if order is None:
        return
    if order.get("status") == OrderStatus.PENDING.value:
        transaction.update(ref, update)
    elif "fanout" not in order:  # the worker finished it first: still record which run queued it
        transaction.update(ref, {"fanout": update["fanout"]})
