"""Page pending orders out of Firestore with cursors, never offsets."""

from __future__ import annotations

from collections.abc import Iterator

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from orders.schema import ORDERS, OrderStatus

PageOfOrders = list[firestore.DocumentSnapshot]


def pending_pages(client: firestore.Client, page_size: int) -> Iterator[PageOfOrders]:
    """Yield pages of ``status == pending`` orders ordered by ``createdAt``, then name.

    Each page starts after the last *snapshot* of the previous one, so ties on
    ``createdAt`` break on the document name and no order is skipped or repeated
    even while earlier pages are being marked ``queued``.
    """
    query = (
        client.collection(ORDERS)
        .where(filter=FieldFilter("status", "==", OrderStatus.PENDING.value))
        .order_by("createdAt")
        .order_by(FieldPath.document_id())
        .limit(page_size)
    )
    cursor: firestore.DocumentSnapshot | None = None
    while True:
        page_query = query.start_after(cursor) if cursor is not None else query
        page = list(page_query.stream())
        if page:
            yield page
        if len(page) < page_size:
            return
        cursor = page[-1]
