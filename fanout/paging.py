"""Page a selection of orders out of Firestore with cursors, never offsets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.cloud import firestore

from fanout.selection import Cursor, Selection


@dataclass(frozen=True)
class Page:
    """Orders read in one query, and the cursor just after the last one read."""

    orders: list[firestore.DocumentSnapshot]
    cursor: Cursor


def pages(
    client: firestore.Client,
    selection: Selection,
    page_size: int,
    after: Cursor | None = None,
) -> Iterator[Page]:
    """Yield pages of the selected orders, in the selection's order, from ``after`` on.

    Each page starts after the last order of the previous one (its ordering value,
    then its document id), so ties break on the document name and no order is
    skipped or repeated even while earlier pages are being marked ``queued``.
    Orders the query cannot exclude (see :meth:`Selection.admits`) are dropped
    from the page's orders; its cursor still moves past them.
    """
    query = selection.query(client).limit(page_size)
    cursor = after
    while True:
        page_query = query.start_after(cursor) if cursor is not None else query
        page = list(page_query.stream())
        if not page:
            return
        cursor = selection.cursor_of(page[-1])
        if not selection.query_is_exact:
            page = [s for s in page if selection.admits(s.to_dict() or {})]
        yield Page(page, cursor)
        if len(page) < page_size:
            return
