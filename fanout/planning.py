"""Turn a page of orders into the named tasks to create, one per order and action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.cloud import firestore, tasks_v2

from fanout.selection import Selection
from orders.contract import TaskPayload, build_task
from orders.errors import OrdersError
from orders.schema import action_done
from orders.settings import CloudSettings


@dataclass
class PagePlan:
    """The tasks of one page, who owns each, and the orders that could not form a task.

    ``generations`` is the task generation chosen per order (the next one when
    redriving), which marking stores on the order.
    """

    tasks: list[tasks_v2.Task] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)


def plan_page(
    orders: list[firestore.DocumentSnapshot],
    selection: Selection,
    cloud: CloudSettings,
    run_id: str,
) -> PagePlan:
    """Build the page's tasks; an order whose data cannot form a task goes in ``broken``."""
    plan = PagePlan()
    for snapshot in orders:
        order = snapshot.to_dict() or {}
        try:
            generation = current_generation(order) + (1 if selection.redrive else 0)
            tasks = [
                build_task(cloud, TaskPayload(snapshot.id, action, generation, run_id))
                for action in selection.actions
                if not action_done(order, action)
            ]
        except (OrdersError, ValueError, TypeError, AttributeError) as exc:
            plan.broken[snapshot.id] = f"cannot form its tasks: {exc}"
            continue
        plan.generations[snapshot.id] = generation
        plan.tasks.extend(tasks)
        plan.owners.extend([snapshot.id] * len(tasks))
    return plan


def current_generation(order: dict[str, Any]) -> int:
    """Return the order's task generation (0 before its first fan-out).

    Raises ``ValueError`` naming the field when it holds something else than a
    whole number of at least 0.
    """
    value = (order.get("fanout") or {}).get("generation", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"fanout.generation is {value!r}, not a whole number of at least 0")
    return value
