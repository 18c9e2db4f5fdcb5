"""The action registry: what each action writes in the commit that records it done.

An action only *adds writes* to the atomic commit that also creates its ledger
entry, so its effect happens exactly when the action is recorded done, and
never twice.
Adding an action is one function here and one line in :data:`REGISTRY` (plus
its name in ``orders.schema.ACTIONS`` so that fanout enqueues it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from orders.contract import TaskPayload
from orders.schema import INVENTORY, OUTBOX
from worker.errors import PermanentTaskError


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may use: the pending commit, the client and the order."""

    writes: firestore.WriteBatch
    client: firestore.Client
    order: dict[str, Any]
    payload: TaskPayload


Action = Callable[[ActionContext], None]


def outbox_key(order_id: str, action: str) -> str:
    """Return the idempotency key of an effect that leaves the system."""
    return f"{order_id}:{action}"


def _write_outbox(ctx: ActionContext, kind: str, message: dict[str, Any]) -> None:
    """Create the outbox document; its must-not-exist precondition refuses a second one."""
    key = outbox_key(ctx.payload.order_id, ctx.payload.action)
    ref = ctx.client.collection(OUTBOX).document(key)
    ctx.writes.create(
        ref,
        {
            "kind": kind,
            "orderId": ctx.payload.order_id,
            "action": ctx.payload.action,
            "message": message,
            "createdAt": firestore.SERVER_TIMESTAMP,
        },
    )


def send_confirmation(ctx: ActionContext) -> None:
    """Queue the order confirmation e-mail to the customer in the outbox."""
    email = ctx.order.get("customerEmail")
    if not isinstance(email, str) or "@" not in email:
        raise PermanentTaskError(f"order {ctx.payload.order_id} has no valid customerEmail")
    _write_outbox(ctx, "email", {"to": email, "template": "order_confirmation"})


def update_inventory(ctx: ActionContext) -> None:
    """Take each item's quantity off ``inventory/{sku}``, in the recording commit."""
    for sku, quantity in _items(ctx).items():
        ref = ctx.client.collection(INVENTORY).document(sku)
        ctx.writes.set(ref, {"stock": firestore.Increment(-quantity)}, merge=True)


def notify_warehouse(ctx: ActionContext) -> None:
    """Queue the pick list for the warehouse in the outbox."""
    items = [{"sku": sku, "quantity": qty} for sku, qty in sorted(_items(ctx).items())]
    _write_outbox(ctx, "warehouse", {"items": items})


def _items(ctx: ActionContext) -> dict[str, int]:
    """Return the order's quantities by sku; a malformed item is a permanent failure."""
    totals: dict[str, int] = {}
    items = ctx.order.get("items")
    if not isinstance(items, list) or not items:
        raise PermanentTaskError(f"order {ctx.payload.order_id} has no items")
    for index, item in enumerate(items):
        sku = item.get("sku") if isinstance(item, dict) else None
        quantity = item.get("quantity") if isinstance(item, dict) else None
        if not isinstance(sku, str) or not sku or "/" in sku:
            raise PermanentTaskError(f"order {ctx.payload.order_id} item {index}: bad sku {sku!r}")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            raise PermanentTaskError(
                f"order {ctx.payload.order_id} item {index}: quantity must be a positive integer"
            )
        totals[sku] = totals.get(sku, 0) + quantity
    return totals


REGISTRY: dict[str, Action] = {
    "send_confirmation": send_confirmation,
    "update_inventory": update_inventory,
    "notify_warehouse": notify_warehouse,
}
