"""Firestore reads for the console: counts by aggregation and documents one page at a time.

Nothing here reads a whole collection: a count is one aggregation query (the
server counts index entries), and a list reads ``page_size`` documents after a
cursor (the last document id of the page before).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from orders.schema import DEAD_LETTERS, FANOUT_RUNS, ORDERS, OrderStatus

COUNTS_IN_PARALLEL = 6


@dataclass(frozen=True)
class DocumentPage:
    """One page of documents as ``(id, fields)`` and the id to go on after ("" at the end)."""

    rows: list[tuple[str, dict[str, Any]]]
    next_after: str


def count(query: firestore.Query | firestore.CollectionReference) -> int:
    """Return how many documents ``query`` matches, with one aggregation query."""
    return int(query.count().get()[0][0].value)


def page(
    collection: firestore.CollectionReference,
    page_size: int,
    after: str = "",
    where: FieldFilter | None = None,
    order_field: str = "",
    descending: bool = False,
) -> DocumentPage:
    """Return the page of ``collection`` (``where`` it holds) after document ``after``.

    Without ``order_field`` documents come in id order, so the cursor is the id
    alone; with it, the cursor document is read first (one read) for its value.
    """
    query: Any = collection if where is None else collection.where(filter=where)
    direction = firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING
    query = query.order_by(order_field or "__name__", direction=direction)
    if after and order_field:
        cursor = collection.document(after).get()
        if cursor.exists:
            query = query.start_after(cursor)
    elif after:
        query = query.start_after({"__name__": after})
    snapshots = list(query.limit(page_size + 1).stream())
    rows = [(s.id, s.to_dict() or {}) for s in snapshots[:page_size]]
    more = len(snapshots) > page_size
    return DocumentPage(rows, rows[-1][0] if more and rows else "")


class Records:
    """The console's Firestore reads, with one client."""

    def __init__(self, db: firestore.Client) -> None:
        """Use ``db`` for every read."""
        self.db = db
        self._pool = ThreadPoolExecutor(COUNTS_IN_PARALLEL, thread_name_prefix="console-count")

    def order_counts(self) -> dict[str, int]:
        """Return the number of orders in each status (aggregation queries) and their ``total``."""
        orders = self.db.collection(ORDERS)
        counted = {
            status.value: self._pool.submit(
                count, orders.where(filter=FieldFilter("status", "==", status.value))
            )
            for status in OrderStatus
        }
        counts = {name: future.result() for name, future in counted.items()}
        return {**counts, "total": sum(counts.values())}

    def orders(self, status: str, page_size: int, after: str = "") -> DocumentPage:
        """Return a page of the orders in ``status``, in id order."""
        in_status = FieldFilter("status", "==", status)
        return page(self.db.collection(ORDERS), page_size, after, where=in_status)

    def runs(self, page_size: int, after: str = "") -> DocumentPage:
        """Return a page of fan-out runs, the latest first."""
        runs = self.db.collection(FANOUT_RUNS)
        return page(runs, page_size, after, order_field="startedAt", descending=True)

    def run(self, run_id: str) -> dict[str, Any] | None:
        """Return one run's record, or None."""
        snapshot = self.db.collection(FANOUT_RUNS).document(run_id).get()
        return (snapshot.to_dict() or {}) if snapshot.exists else None

    def dead_letter_count(self) -> int:
        """Return how many dead letters there are (one aggregation query)."""
        return count(self.db.collection(DEAD_LETTERS))

    def dead_letters(self, page_size: int, after: str = "") -> DocumentPage:
        """Return a page of dead letters, the latest first."""
        letters = self.db.collection(DEAD_LETTERS)
        return page(letters, page_size, after, order_field="receivedAt", descending=True)

    def close(self) -> None:
        """Stop the counting threads."""
        self._pool.shutdown(wait=False)
