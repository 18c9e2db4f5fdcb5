"""Perform one action of one order exactly once, in one Firestore transaction.

The transaction reads the order, returns early when the action is already done,
lets the action add its writes, and marks the action done (and the order
``completed`` when it was the last one). A redelivered task, or two deliveries
racing, therefore change nothing twice: the loser of a race re-reads the order
on retry and finds the action done.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from orders.contract import TaskPayload
from orders.schema import (
    DEAD_LETTERS,
    ORDERS,
    ActionState,
    OrderStatus,
    action_done,
    all_done_after,
)
from worker.actions import REGISTRY, ActionContext
from worker.errors import PermanentTaskError, TransientTaskError

log = logging.getLogger(__name__)

_TRANSIENT = (
    gexc.Aborted,
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
)


class Outcome(StrEnum):
    """What a delivery did."""

    DONE = "done"
    ALREADY_DONE = "already_done"


class Performer:
    """Runs actions against one Firestore client, built once per process."""

    def __init__(self, client: firestore.Client, transaction_attempts: int) -> None:
        """Use ``client`` and try each transaction up to ``transaction_attempts`` times."""
        self._client = client
        self._attempts = transaction_attempts

    def perform(self, payload: TaskPayload) -> Outcome:
        """Perform ``payload``'s action once; raise Permanent- or TransientTaskError otherwise."""
        action = REGISTRY.get(payload.action)
        if action is None:
            known = ", ".join(sorted(REGISTRY))
            raise PermanentTaskError(f"unknown action {payload.action!r}; known actions: {known}")
        if "/" in payload.order_id or len(payload.order_id.encode()) > 1500:
            raise PermanentTaskError(f"orderId {payload.order_id!r} is not a Firestore document id")
        order_ref = self._client.collection(ORDERS).document(payload.order_id)
        transaction = self._client.transaction(max_attempts=self._attempts)
        try:
            outcome: Outcome = _complete(transaction, self._client, order_ref, payload)
        except _TRANSIENT as exc:
            raise TransientTaskError(f"Firestore is busy or unavailable: {exc}") from exc
        except ValueError as exc:  # the client gives up on contention with a ValueError
            if isinstance(exc.__cause__, gexc.GoogleAPICallError):
                raise TransientTaskError(f"transaction kept conflicting: {exc}") from exc
            raise
        return outcome

    def record_rejection(self, reason: str, detail: dict[str, Any]) -> None:
        """Record a permanently failed delivery in the dead-letter collection."""
        self._client.collection(DEAD_LETTERS).add(
            {"reason": reason, "receivedAt": firestore.SERVER_TIMESTAMP, **detail}
        )


@firestore.transactional  # type: ignore[untyped-decorator]
def _complete(
    transaction: firestore.Transaction,
    client: firestore.Client,
    order_ref: firestore.DocumentReference,
    payload: TaskPayload,
) -> Outcome:
    snapshot = order_ref.get(transaction=transaction)
    if not snapshot.exists:
        raise PermanentTaskError(f"order {payload.order_id!r} does not exist")
    order = snapshot.to_dict() or {}
    if action_done(order, payload.action):
        return Outcome.ALREADY_DONE
    REGISTRY[payload.action](ActionContext(transaction, client, order, payload))
    prefix = f"actions.{payload.action}"
    updates: dict[str, Any] = {
        f"{prefix}.state": ActionState.DONE.value,
        f"{prefix}.completedAt": firestore.SERVER_TIMESTAMP,
        f"{prefix}.attempts": firestore.Increment(1),
        f"{prefix}.generation": payload.generation,
    }
    if all_done_after(order, payload.action):
        updates["status"] = OrderStatus.COMPLETED.value
        updates["completedAt"] = firestore.SERVER_TIMESTAMP
    transaction.update(order_ref, updates)
    return Outcome.DONE
