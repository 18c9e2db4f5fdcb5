"""The size of the queue group in force, kept in Firestore, and how a resize takes effect.

A task's queue depends on its id and the group's size (:mod:`orders.queue_group`),
and a queue only deduplicates names within itself. So the size an order's tasks
were created under must not change while those tasks may be created again:

- marking records it on the order (``fanout.queues``), with the generation; any
  later run creating that generation's tasks again uses the recorded size
  (orders fanned out before groups existed have none recorded: one queue);
- an order with no size recorded for its generation (never marked: not fanned
  out yet, or fanned out by a run that stopped before marking it) gets the size
  *in force*, stored in ``fanout_queue_groups/{TASKS_QUEUE}``. When
  ``TASKS_QUEUE_COUNT`` differs from it, the stored size stays in force until a
  run over every pending order (the scheduled kind) finishes with no failure:
  that run has marked every order an earlier run may have left unmarked, so the
  configured size is adopted then, and used from the next run on.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from fanout.errors import QueueGroupError
from fanout.selection import Selection
from orders.settings import CloudSettings

QUEUE_GROUPS = "fanout_queue_groups"
LEGACY_QUEUE_COUNT = 1  # orders fanned out before queue groups went to the single queue


def recorded_queue_count(order: dict[str, Any], new_names: bool) -> int | None:
    """Return the group size the order's current tasks were created under, if known.

    ``new_names``: this run gives the order the next generation, whose tasks
    have never been created, so nothing is recorded for them.
    """
    fanout = order.get("fanout") or {}
    if new_names or "runId" not in fanout:
        return None
    count = fanout.get("queues", LEGACY_QUEUE_COUNT)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"fanout.queues is {count!r}, not a whole number of at least 1")
    return count


class QueueGroup:
    """The group size in force for orders with none recorded (see the module docstring)."""

    def __init__(self, client: firestore.Client, cloud: CloudSettings) -> None:
        """Keep the size in force for ``cloud``'s group in ``client``'s database."""
        self._doc = client.collection(QUEUE_GROUPS).document(cloud.queue)
        self.configured = cloud.queue_count
        self.in_force = cloud.queue_count

    def load(self) -> int:
        """Read the size in force (storing the configured size the first time); return it."""
        snapshot = self._doc.get()
        if not snapshot.exists:
            try:
                self._doc.create({"size": self.configured, "adoptedAt": firestore.SERVER_TIMESTAMP})
            except gexc.AlreadyExists:  # another instance stored it first
                return self.load()
            self.in_force = self.configured
            return self.in_force
        size = (snapshot.to_dict() or {}).get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise QueueGroupError(
                f"{self._doc.path} holds size {size!r}, not a whole number of at least 1; "
                f"set it to the group's size, or delete it to store TASKS_QUEUE_COUNT"
            )
        self.in_force = size
        return size

    @property
    def resizing(self) -> bool:
        """Tell whether the configured size waits to be adopted."""
        return self.in_force != self.configured

    def adopt_after(self, selection: Selection, failures: int) -> bool:
        """Adopt the configured size after a finished run, when that is safe; tell whether.

        Safe after a run over every pending order and every action that had no
        failure (``failures`` counts the run's failed and unmarked orders).
        """
        if not self.resizing or failures or selection != Selection():
            return False
        self._doc.set(
            {
                "size": self.configured,
                "previousSize": self.in_force,
                "adoptedAt": firestore.SERVER_TIMESTAMP,
            }
        )
        self.in_force = self.configured
        return True
