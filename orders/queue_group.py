"""Queue groups: the queues one logical queue is spread over, and which task goes where.

One Cloud Tasks queue dispatches at most 500 tasks per second; Google's way past
that is a *queue group*, queues with consecutive names. ``TASKS_QUEUE_COUNT`` is
the group's size: 1 is the single queue named ``TASKS_QUEUE``; N > 1 are the
queues ``{TASKS_QUEUE}-00`` … ``{TASKS_QUEUE}-{N-1}``.

A task's queue is a stable function of its id and the group size, so the same
task name always lands in the same queue (where the queue's name deduplication
refuses it a second time).
"""

from __future__ import annotations

import functools
import hashlib

MAX_QUEUE_COUNT = 100  # queues in one group: two-digit suffixes, a tenth of a region's quota


@functools.cache
def queue_ids(base: str, count: int) -> tuple[str, ...]:
    """Return the ids of the queues of the group of ``count`` queues named after ``base``."""
    if not 1 <= count <= MAX_QUEUE_COUNT:
        raise ValueError(f"a queue group has 1 to {MAX_QUEUE_COUNT} queues, not {count}")
    if count == 1:
        return (base,)
    return tuple(f"{base}-{index:02d}" for index in range(count))


def queue_index(task_id: str, count: int) -> int:
    """Return the index (0 to ``count - 1``) of the queue the task named ``task_id`` goes to."""
    if count == 1:
        return 0
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def queue_for_task(base: str, count: int, task_id: str) -> str:
    """Return the id of the queue, in the group of ``count``, the task ``task_id`` goes to."""
    return queue_ids(base, count)[queue_index(task_id, count)]


@functools.cache
def accepted_queue_ids(base: str, count: int) -> frozenset[str]:
    """Return the queue ids a worker of a group of ``count`` accepts deliveries from.

    Every queue of the group, and ``base`` itself (the group of one), whose tasks
    still arrive for a while after a single queue grows into a group.
    """
    return frozenset((base, *queue_ids(base, count)))
