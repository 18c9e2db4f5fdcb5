"""Seed pending orders and their stock into Firestore, in parallel batched commits."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

from google.cloud import firestore

from orders.schema import INVENTORY, ORDERS, new_order

COMMIT_SIZE = 250  # writes per commit
PARALLEL_COMMITS = 4


def seed(db: firestore.Client, orders: int, skus: int = 50, stock: int = 1_000_000) -> list[str]:
    """Create ``orders`` pending orders over ``skus`` stocked skus; return the order ids."""
    created = dt.datetime.now(dt.UTC)
    ids = [f"order-{i:07d}" for i in range(orders)]
    writes: list[tuple[firestore.DocumentReference, dict[str, object]]] = [
        (db.collection(INVENTORY).document(f"sku-{s:04d}"), {"stock": stock}) for s in range(skus)
    ]
    for i, order_id in enumerate(ids):
        items = [
            {"sku": f"sku-{(i + k) % skus:04d}", "quantity": 1 + (i + k) % 3}
            for k in range(1 + i % 3)
        ]
        order = new_order(f"customer{i}@example.com", items, created + dt.timedelta(microseconds=i))
        writes.append((db.collection(ORDERS).document(order_id), order))
    chunks = [writes[i : i + COMMIT_SIZE] for i in range(0, len(writes), COMMIT_SIZE)]
    with ThreadPoolExecutor(PARALLEL_COMMITS) as pool:
        list(pool.map(lambda chunk: _commit(db, chunk), chunks))
    return ids


def _commit(
    db: firestore.Client, chunk: list[tuple[firestore.DocumentReference, dict[str, object]]]
) -> None:
    batch = db.batch()
    for ref, data in chunk:
        batch.set(ref, data)
    batch.commit()
