"""``update_inventory``: take the order's quantities off ``inventory/{sku}``, stock checked."""

from __future__ import annotations

from orders.schema import INVENTORY
from worker.actions.base import ActionContext, order_items
from worker.errors import PermanentTaskError


def update_inventory(ctx: ActionContext) -> None:
    """Decrement each sku's ``stock`` in the commit that marks the action done.

    The stock is read, checked and written with a precondition on the update
    time read: a concurrent change refuses the commit and the action runs again
    on fresh stock. The order is read again with the stock, and the commit is
    refused if it changes after that read (a cancellation is then seen and
    fails the action for good). Deliveries in this process that share a
    sku take turns (:meth:`ActionContext.serialize`) rather than refuse each
    other's commits.
    Too little stock (or an unknown sku) is a permanent failure.
    """
    wanted = order_items(ctx)
    refs = {sku: ctx.store.document(INVENTORY, sku) for sku in sorted(wanted)}
    ctx.serialize(ref.path for ref in refs.values())
    # With the order: a cancellation meanwhile must not take the stock.
    snapshots = ctx.read_with_order(refs.values())
    for sku, ref in refs.items():
        snapshot = snapshots.get(ref.path)
        if snapshot is None or not snapshot.exists:
            raise PermanentTaskError(f"sku {sku!r} of order {ctx.payload.order_id} is unknown")
        stock = snapshot.fields.get("stock")  # a missing field: no stock
        if not isinstance(stock, int) or stock < wanted[sku]:
            raise PermanentTaskError(
                f"insufficient stock of {sku!r} for order {ctx.payload.order_id}: "
                f"{wanted[sku]} wanted, {stock} in stock"
            )
        ctx.writes.update(
            ref, {"stock": stock - wanted[sku]}, last_update_time=snapshot.update_time
        )
