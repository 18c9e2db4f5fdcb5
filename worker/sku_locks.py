"""Striped in-process locks: deliveries in one process that would conflict wait instead.

``update_inventory`` reads stock and commits it with a precondition on the update
time read (an optimistic transaction). When two deliveries in one process take
the same sku at once, one commit is refused and that delivery reads and commits
again: two wasted round trips, and CPU, for a conflict both sides could see
coming. Holding a lock on each sku from the read to the commit makes the second
one wait instead. This only avoids waste: the precondition still decides, so
deliveries in other processes or instances stay exactly as correct as before.

Keys hash onto a fixed number of stripes, so memory stays bounded whatever the
number of skus; a delivery takes all its stripes at once, in ascending order, and
releases them after its commit, so two deliveries never wait for each other in a
cycle.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

from worker.errors import TransientTaskError

STRIPES = 256  # locks shared by every key; two keys on one stripe merely wait for each other


class StripedLocks:
    """A fixed set of locks that keys (strings) map onto."""

    def __init__(self, stripes: int = STRIPES) -> None:
        """Create ``stripes`` locks."""
        self._locks = [threading.Lock() for _ in range(stripes)]

    def hold(self, stack: contextlib.ExitStack, keys: Iterable[str], timeout_s: float) -> None:
        """Acquire the locks of ``keys`` (ascending stripe order); ``stack`` releases them.

        Raises :class:`TransientTaskError` when one is not free within ``timeout_s``
        seconds (the queue retries the task later).
        """
        for index in sorted({hash(key) % len(self._locks) for key in keys}):
            lock = self._locks[index]
            if not lock.acquire(timeout=timeout_s):
                raise TransientTaskError(
                    f"another delivery in this process held a lock on the same documents "
                    f"for more than {timeout_s} s"
                )
            stack.callback(lock.release)
