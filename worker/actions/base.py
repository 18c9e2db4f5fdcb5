"""What every action gets, and the order-reading helpers they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

from orders.contract import TaskPayload
from worker.errors import PermanentTaskError
from worker.outbox import Outbox


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may use.

    ``writes`` is the commit that also marks the action done in the ledger and on
    the order: whatever the action adds to it happens exactly when the action is
    recorded done, and never twice. Documents an action reads and then writes in
    it get a ``last_update_time`` precondition (:meth:`precondition`), so the
    commit is an optimistic transaction: if one changed since the read, the
    whole commit is refused and the delivery runs the action again.
    """

    writes: firestore.WriteBatch
    client: firestore.Client
    order: dict[str, Any]
    payload: TaskPayload
    outbox: Outbox
    rpc: dict[str, Any]

    def send(self, kind: str, message: dict[str, Any]) -> None:
        """Record ``message`` in the outbox and deliver it with its idempotency key."""
        self.outbox.send(self.writes, self.payload, kind, message)

    def precondition(self, snapshot: firestore.DocumentSnapshot) -> Any:
        """Return the write option that refuses a write if ``snapshot``'s document changed."""
        return self.client.write_option(last_update_time=snapshot.update_time)


Action = Callable[[ActionContext], None]


def order_items(ctx: ActionContext) -> dict[str, int]:
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
