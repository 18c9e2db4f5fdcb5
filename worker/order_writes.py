"""Writes on an order document that both the exactly-once path and the rejections make."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.field_path import FieldPath

from worker.documents import Doc, DocRef, Store

ORDER_WRITE_ATTEMPTS = 10  # optimistic tries of a write conditional on the order as read
TRANSIENT_ERRORS = (
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.RetryError,
)  # Firestore errors that pass: the queue's retry may succeed


def update_order_as_read(
    store: Store, order_ref: DocRef, changes: Callable[[Doc], dict[str, Any] | None]
) -> bool:
    """Read the order and write ``changes(order)``, on condition that it is unchanged.

    ``changes`` returning None means nothing to write. A refused write (the
    order changed meanwhile) reads it again. Returns False when it kept
    changing for :data:`ORDER_WRITE_ATTEMPTS` tries.
    """
    for _ in range(ORDER_WRITE_ATTEMPTS):
        order = store.get(order_ref)
        update = changes(order)
        if update is None:
            return True
        writes = store.writes()
        writes.update(order_ref, update, last_update_time=order.update_time)
        try:
            store.commit(writes)
            return True
        except gexc.FailedPrecondition:
            continue  # someone else wrote the order meanwhile: look again
    return False


def is_document_id(order_id: str) -> bool:
    """Tell whether Firestore accepts ``order_id`` as a document id."""
    reserved = order_id in (".", "..") or (order_id.startswith("__") and order_id.endswith("__"))
    return "/" not in order_id and not reserved and len(order_id.encode()) <= 1500


def action_path(action: str) -> str:
    """Return the field path of the order's record of ``action`` (``actions.{action}``)."""
    path: str = FieldPath("actions", action).to_api_repr()
    return path
