"""Perform one action of one order exactly once.

Exactly once rests on a ledger document per (order, action),
``orders/{orderId}/ledger/{action}``. One Firestore transaction reads that entry,
returns early when it says done, lets the action add its writes, and records
the entry and ``actions.{action}`` on the order as done. Only deliveries of the
*same* task contend on the entry; the order document is written blindly (never
read inside the transaction), so the three actions of one order never deadlock
on it. A redelivered task, or two deliveries racing, change nothing twice.

Completing the order is a separate, idempotent step run after every delivery
(also an already-done one, so a crash between the two steps heals on
redelivery): when every action is done it sets ``status = completed`` with a
precondition on the update time it read, retrying on a lost race.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from orders.contract import TaskPayload
from orders.schema import (
    ACTIONS,
    DEAD_LETTERS,
    LEDGER,
    ORDERS,
    ActionState,
    OrderStatus,
    action_done,
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
COMPLETION_ATTEMPTS = 10  # optimistic tries to mark an order completed before answering 503
_COMPLETABLE = frozenset({OrderStatus.PENDING.value, OrderStatus.QUEUED.value})


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
        if payload.action not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise PermanentTaskError(f"unknown action {payload.action!r}; known actions: {known}")
        if "/" in payload.order_id or len(payload.order_id.encode()) > 1500:
            raise PermanentTaskError(f"orderId {payload.order_id!r} is not a Firestore document id")
        order_ref = self._client.collection(ORDERS).document(payload.order_id)
        try:
            # The order's own fields (items, customer) do not change after creation,
            # so they are read outside the transaction: no lock on the order document.
            snapshot = order_ref.get()
            if not snapshot.exists:
                raise PermanentTaskError(f"order {payload.order_id!r} does not exist")
            transaction = self._client.transaction(max_attempts=self._attempts)
            order = snapshot.to_dict() or {}
            outcome: Outcome = _record_action(transaction, self._client, order_ref, order, payload)
            _complete_order_if_done(self._client, order_ref)
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
def _record_action(
    transaction: firestore.Transaction,
    client: firestore.Client,
    order_ref: firestore.DocumentReference,
    order: dict[str, Any],
    payload: TaskPayload,
) -> Outcome:
    entry_ref = order_ref.collection(LEDGER).document(payload.action)
    entry = entry_ref.get(transaction=transaction)
    if entry.exists and (entry.to_dict() or {}).get("state") == ActionState.DONE.value:
        return Outcome.ALREADY_DONE
    REGISTRY[payload.action](ActionContext(transaction, client, order, payload))
    done = {
        "state": ActionState.DONE.value,
        "completedAt": firestore.SERVER_TIMESTAMP,
        "generation": payload.generation,
        "runId": payload.run_id,
    }
    transaction.set(entry_ref, done)
    prefix = f"actions.{payload.action}"
    transaction.update(
        order_ref,
        {
            f"{prefix}.state": ActionState.DONE.value,
            f"{prefix}.completedAt": firestore.SERVER_TIMESTAMP,
            f"{prefix}.attempts": firestore.Increment(1),
            f"{prefix}.generation": payload.generation,
        },
    )
    return Outcome.DONE


def _complete_order_if_done(
    client: firestore.Client, order_ref: firestore.DocumentReference
) -> None:
    """Mark the order completed once every action is done; a no-op otherwise."""
    for _ in range(COMPLETION_ATTEMPTS):
        snapshot = order_ref.get()
        order = snapshot.to_dict() or {}
        if order.get("status") not in _COMPLETABLE:
            return
        if not all(action_done(order, name) for name in ACTIONS):
            return
        option = client.write_option(last_update_time=snapshot.update_time)
        try:
            order_ref.update(
                {"status": OrderStatus.COMPLETED.value, "completedAt": firestore.SERVER_TIMESTAMP},
                option=option,
            )
            return
        except gexc.FailedPrecondition:
            continue  # someone else wrote the order meanwhile: look again
    raise TransientTaskError(f"order {order_ref.id} kept changing while being completed")
