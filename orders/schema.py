"""The Firestore order document: collections, states and field names.

``orders/{orderId}`` holds ``status``, ``createdAt``, the order's own fields
(``customerEmail``, ``items`` with ``sku`` and ``quantity``), ``fanout`` (run id,
queued-at time, generation) and ``actions.{name}`` (state, attempts, completedAt,
lastError).
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

ORDERS = "orders"
INVENTORY = "inventory"
OUTBOX = "outbox"
FANOUT_RUNS = "fanout_runs"
DEAD_LETTERS = "dead_letters"
LEDGER = "ledger"  # subcollection of an order: one entry per action


class OrderStatus(StrEnum):
    """Lifecycle of an order: pending -> queued -> completed (or failed, or cancelled)."""

    PENDING = "pending"
    QUEUED = "queued"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # set outside this system; its actions are refused


class ActionState(StrEnum):
    """State of one action of an order, kept under ``actions.{name}.state``."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"  # the queue's last attempt failed transiently


# The actions fanned out for every order, in the order they are enqueued.
ACTIONS: tuple[str, ...] = ("send_confirmation", "update_inventory", "notify_warehouse")


def new_order(
    customer_email: str,
    items: list[dict[str, Any]],
    created_at: dt.datetime,
) -> dict[str, Any]:
    """Return the document of a new pending order with every action pending."""
    return {
        "status": OrderStatus.PENDING.value,
        "createdAt": created_at,
        "customerEmail": customer_email,
        "items": items,
        "actions": {name: {"state": ActionState.PENDING.value, "attempts": 0} for name in ACTIONS},
    }


def action_done(order: dict[str, Any], action: str) -> bool:
    """Tell whether ``action`` of the order document is recorded as done."""
    state = (order.get("actions") or {}).get(action, {}).get("state")
    return bool(state == ActionState.DONE.value)


def action_untouched(order: dict[str, Any], action: str) -> bool:
    """Tell whether no delivery has recorded anything for ``action`` (pending, 0 attempts)."""
    record = (order.get("actions") or {}).get(action, {})
    return bool(record.get("state") == ActionState.PENDING.value and record.get("attempts") == 0)
