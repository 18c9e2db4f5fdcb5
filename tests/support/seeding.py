"""Orders (and the stock they need) written straight into Firestore for a test."""

from __future__ import annotations

import datetime as dt

from google.cloud import firestore

from orders.schema import INVENTORY, ORDERS, new_order

BATCH_WRITES = 400  # writes per commit, under Firestore's 500


def seed_orders(
    db: firestore.Client, count: int, prefix: str = "order", skus: int = 5
) -> list[str]:
    """Create ``count`` pending orders (and stock for their skus); return their ids."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    batch = db.batch()
    for sku in range(skus):
        batch.set(db.collection(INVENTORY).document(f"sku-{sku}"), {"stock": 1_000_000})
    for i, order_id in enumerate(ids):
        items = [{"sku": f"sku-{i % skus}", "quantity": 1 + i % 3}]
        doc = new_order(f"c{i}@example.com", items, base + dt.timedelta(seconds=i))
        batch.set(db.collection(ORDERS).document(order_id), doc)
        if (i + 1) % BATCH_WRITES == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()
    return ids
