"""Rejections: tasks that can never succeed, recorded in ``dead_letters`` and acknowledged.

A task that is not one (bad JSON, unknown action or order) is written to
``dead_letters/{task id}``; a task whose queue's last attempt failed is also
recorded on its order's action (``dead_lettered``), unless the action is done.
"""

from __future__ import annotations

import hashlib
from typing import Any

from orders.contract import TaskPayload
from orders.schema import DEAD_LETTERS, ORDERS, ActionState, action_done
from worker.delivery import Delivery
from worker.documents import SERVER_TIMESTAMP, Doc, Store
from worker.errors import TransientTaskError
from worker.order_writes import (
    TRANSIENT_ERRORS,
    action_path,
    is_document_id,
    update_order_as_read,
)


class Rejections:
    """Records rejected and dead-lettered tasks with one Firestore store."""

    def __init__(self, store: Store) -> None:
        """Write with ``store``."""
        self._store = store

    def record_rejection(self, delivery: Delivery, reason: str, detail: dict[str, Any]) -> None:
        """Record a delivery that can never succeed, and has no order, in ``dead_letters``.

        One document per task, named after it and written whole: a write retried
        after a lost answer, or a later attempt of the task, replaces it. Raises
        :class:`TransientTaskError` when Firestore is busy; any other exception
        means the rejection can never be recorded.
        """
        writes = self._store.writes()
        writes.set(
            self._store.document(DEAD_LETTERS, letter_id(delivery.task_name)),
            {"reason": reason, "receivedAt": SERVER_TIMESTAMP, **detail},
        )
        try:
            self._store.commit(writes)
        except TRANSIENT_ERRORS as exc:
            raise TransientTaskError(f"Firestore is busy or unavailable: {exc}") from exc

    def record_dead_letter(
        self, payload: TaskPayload, delivery: Delivery, reason: str, detail: dict[str, Any]
    ) -> None:
        """Record that the queue's last attempt of ``payload`` failed: no retry will follow.

        The order's action becomes ``dead_lettered`` unless it is done: the write
        is conditional on the order as read, so a delivery that completes the
        action meanwhile (the holder of a live claim) is not overwritten.
        """
        self.record_rejection(delivery, reason, {**detail, "lastAttempt": True})
        prefix = action_path(payload.action)
        letter = {f"{prefix}.state": ActionState.DEAD_LETTERED.value, f"{prefix}.lastError": reason}

        def dead_letter(order: Doc) -> dict[str, Any] | None:
            if not order.exists or action_done(order.fields, payload.action):
                return None  # no order, or the action did take effect: it stays done
            return letter

        update_order_as_read(
            self._store, self._store.document(ORDERS, payload.order_id), dead_letter
        )


def letter_id(task_name: str) -> str:
    """Return the id of a task's dead letter: its short name, or a digest of an unusable one."""
    short = task_name.rsplit("/", 1)[-1]
    if short and is_document_id(short):
        return short
    return "task-" + hashlib.sha256(task_name.encode()).hexdigest()[:32]
