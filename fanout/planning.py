"""Turn a page of orders into the named tasks to create, one per order and action."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.cloud import firestore, tasks_v2

from fanout.queue_group import recorded_queue_count
from fanout.selection import Selection
from orders.contract import TaskPayload, build_task
from orders.errors import OrdersError
from orders.schema import ACTIONS, OrderStatus, action_done
from orders.settings import CloudSettings


@dataclass
class PagePlan:
    """The tasks of one page, who owns each, and the orders that could not form a task.

    ``generations`` is the task generation chosen per order, which marking stores
    on the order. ``partial`` holds orders with actions left undone that this run
    does not enqueue (a subset of actions was chosen, or nothing is left to do):
    they get the run's ``fanout`` record but keep their status, so a later run
    enqueues the rest. ``queue_counts`` is the size of the queue group each
    order's tasks went to, which marking stores too.
    """

    tasks: list[tasks_v2.Task] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    partial: set[str] = field(default_factory=set)
    queue_counts: dict[str, int] = field(default_factory=dict)


def plan_page(
    orders: list[firestore.DocumentSnapshot],
    selection: Selection,
    cloud: CloudSettings,
    run_id: str,
    headers: Mapping[str, str] | None = None,
    queue_count: int = 0,
) -> PagePlan:
    """Build the page's tasks; an order whose data cannot form a task goes in ``broken``.

    ``headers`` go on every task's HTTP request (the run's trace headers). Each
    order's tasks go to the queue group of the size recorded on the order for
    its generation, or else of ``queue_count`` (the size in force, see
    :mod:`fanout.queue_group`; default: the settings' ``queue_count``).
    """
    plan = PagePlan()
    for snapshot in orders:
        order = planned_fields(snapshot)
        try:
            new_names = needs_new_names(order, selection)
            generation = current_generation(order) + (1 if new_names else 0)
            group = recorded_queue_count(order, new_names) or queue_count or cloud.queue_count
            undone = [action for action in ACTIONS if not action_done(order, action)]
            chosen = [action for action in undone if action in selection.actions]
            tasks = [
                build_task(
                    cloud, TaskPayload(snapshot.id, action, generation, run_id), headers, group
                )
                for action in chosen
            ]
        except (OrdersError, ValueError, TypeError, AttributeError) as exc:
            plan.broken[snapshot.id] = f"cannot form its tasks: {exc}"
            continue
        if not chosen or len(chosen) < len(undone):
            plan.partial.add(snapshot.id)
        plan.generations[snapshot.id] = generation
        plan.queue_counts[snapshot.id] = group
        plan.tasks.extend(tasks)
        plan.owners.extend([snapshot.id] * len(tasks))
    return plan


PLANNED_FIELDS = ("status", "fanout", "actions")  # what planning reads of an order


def planned_fields(snapshot: firestore.DocumentSnapshot) -> dict[str, Any]:
    """Return the order's fields that planning reads, as ``to_dict()`` has them.

    Only those: ``to_dict()`` deep-copies the whole order (its items, its
    timestamps), which cost more than the rest of planning an order.
    """
    if not snapshot.exists:
        return {}
    fields: dict[str, Any] = {}
    for name in PLANNED_FIELDS:
        try:
            fields[name] = snapshot.get(name)
        except KeyError:  # the order has no such field
            continue
    return fields


def needs_new_names(order: dict[str, Any], selection: Selection) -> bool:
    """Tell whether the order's tasks need the next generation's names.

    A redrive always does; so does any order fanned out before that is no longer
    pending (``queued`` or ``failed`` chosen by status), because the names of its
    earlier tasks stay reserved for about an hour after they finish.
    """
    fanned_out = "runId" in (order.get("fanout") or {})
    return selection.redrive or (fanned_out and order.get("status") != OrderStatus.PENDING.value)


def current_generation(order: dict[str, Any]) -> int:
    """Return the order's task generation (0 before its first fan-out).

    Raises ``ValueError`` naming the field when it holds something else than a
    whole number of at least 0.
    """
    value = (order.get("fanout") or {}).get("generation", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"fanout.generation is {value!r}, not a whole number of at least 0")
    return value
