"""The action registry: the one place that lists what each action name does.

Adding an action is one module in this package and one line in
:data:`REGISTRY` (plus its name in ``orders.schema.ACTIONS``, so that fanout
enqueues it: fanout never imports the worker).
"""

from __future__ import annotations

from worker.actions.base import Action, ActionContext, OrderGuard
from worker.actions.confirmation import send_confirmation
from worker.actions.inventory import update_inventory
from worker.actions.warehouse import notify_warehouse

REGISTRY: dict[str, Action] = {
    "send_confirmation": send_confirmation,
    "update_inventory": update_inventory,
    "notify_warehouse": notify_warehouse,
}

# Actions whose whole effect is in the commit that records them done: they need
# no claim written beforehand (worker.ledger.Ledger.defer), one write fewer.
IN_COMMIT = frozenset({"update_inventory"})

__all__ = ["IN_COMMIT", "REGISTRY", "Action", "ActionContext", "OrderGuard"]
