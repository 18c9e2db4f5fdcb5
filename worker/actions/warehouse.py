"""``notify_warehouse``: the pick list, posted to the warehouse through the outbox."""

from __future__ import annotations

from worker.actions.base import ActionContext, order_items

KIND = "warehouse"


def notify_warehouse(ctx: ActionContext) -> None:
    """Post the order's pick list to the warehouse (outbox kind ``warehouse``)."""
    items = [{"sku": sku, "quantity": qty} for sku, qty in sorted(order_items(ctx).items())]
    ctx.send(KIND, {"orderId": ctx.payload.order_id, "items": items})
