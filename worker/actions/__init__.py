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

# Actions whose effect leaves the system (an outbox POST) before the commit that
# records them done. Every other action's whole effect is in that commit, so it
# never needs a claim written beforehand (worker.ledger.Ledger.defer); these do
# only with WORKER_CLAIM_BEFORE_POST.
POSTING = frozenset({"send_confirmation", "notify_warehouse"})

__all__ = ["POSTING", "REGISTRY", "Action", "ActionContext", "OrderGuard"]
