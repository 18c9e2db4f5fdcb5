"""Perform one action of one order exactly once.

Exactly once rests on a ledger document per (order, action),
``orders/{orderId}/ledger/{action}``. One atomic commit *creates* that entry
(a must-not-exist precondition), applies the action's writes and records
``actions.{action}`` on the order as done. A redelivered task, or two deliveries
racing, find the entry there: their commit is refused as a whole and changes
nothing. No document is read and then written, so nothing holds a lock: the
three actions of one order never contend, and the commit is one round trip.

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

    def __init__(self, client: firestore.Client) -> None:
        """Use ``client`` for every delivery."""
        self._client = client

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
            # so a plain read is enough: nothing locks the order document.
            snapshot = order_ref.get()
            if not snapshot.exists:
                raise PermanentTaskError(f"order {payload.order_id!r} does not exist")
            outcome = _record_action(self._client, order_ref, snapshot.to_dict() or {}, payload)
            _complete_order_if_done(self._client, order_ref)
        except _TRANSIENT as exc:
            raise TransientTaskError(f"Firestore is busy or unavailable: {exc}") from exc
        return outcome

    def record_rejection(self, reason: str, detail: dict[str, Any]) -> None:
        """Record a permanently failed delivery in the dead-letter collection."""
        self._client.collection(DEAD_LETTERS).add(
            {"reason": reason, "receivedAt": firestore.SERVER_TIMESTAMP, **detail}
        )


def _record_action(
    client: firestore.Client,
    order_ref: firestore.DocumentReference,
    order: dict[str, Any],
    payload: TaskPayload,
) -> Outcome:
    """Apply the action and record it done in one atomic commit, unless it already is."""
    batch = client.batch()
    batch.create(
        order_ref.collection(LEDGER).document(payload.action),
        {
            "state": ActionState.DONE.value,
            "completedAt": firestore.SERVER_TIMESTAMP,
            "generation": payload.generation,
            "runId": payload.run_id,
        },
    )
    REGISTRY[payload.action](ActionContext(batch, client, order, payload))
    prefix = f"actions.{payload.action}"
    batch.update(
        order_ref,
        {
            f"{prefix}.state": ActionState.DONE.value,
            f"{prefix}.completedAt": firestore.SERVER_TIMESTAMP,
            f"{prefix}.attempts": firestore.Increment(1),
            f"{prefix}.generation": payload.generation,
        },
    )
    try:
        batch.commit()
    except gexc.AlreadyExists:  # the ledger entry was created before (not Aborted: retry that)
        return Outcome.ALREADY_DONE
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
