"""The in-memory task store: the SQLite store without a file, for embedded use."""

from __future__ import annotations

from localcloud.tasks.sqlstore import MEMORY, SqliteTaskStore
from localcloud.tasks.store import DEFAULT_RESERVATION_S


class MemoryTaskStore(SqliteTaskStore):
    """A :class:`SqliteTaskStore` in memory: same semantics, nothing survives the process."""

    def __init__(self, reservation_s: float = DEFAULT_RESERVATION_S) -> None:
        super().__init__(MEMORY, reservation_s)
