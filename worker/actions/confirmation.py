"""``send_confirmation``: the order confirmation e-mail, through the outbox."""

from __future__ import annotations

from worker.actions.base import ActionContext
from worker.errors import PermanentTaskError

KIND = "email"


def send_confirmation(ctx: ActionContext) -> None:
    """Send the order confirmation e-mail to the customer (outbox kind ``email``)."""
    email = ctx.order.get("customerEmail")
    if not isinstance(email, str) or "@" not in email:
        raise PermanentTaskError(f"order {ctx.payload.order_id} has no valid customerEmail")
    ctx.send(KIND, {"to": email, "template": "order_confirmation"})
