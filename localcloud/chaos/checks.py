"""What must hold after any fault: every order done once, nothing lost, nothing twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from localcloud.warehouse import WarehouseReceiver
from orders.schema import ACTIONS, DEAD_LETTERS, INVENTORY, LEDGER, ORDERS, OUTBOX, OrderStatus

OUTBOX_ACTIONS = 2  # send_confirmation (email) and notify_warehouse leave the system


def _count(query: Any) -> int:
    return int(query.count().get()[0][0].value)


def invariants(
    db: firestore.Client, orders: int, stock_before: dict[str, int], warehouse: WarehouseReceiver
) -> dict[str, bool]:
    """Check the invariants; return each one's name and whether it held.

    ``stock_before`` is each sku's stock as seeded.
    """
    ordered: Counter[str] = Counter()
    for snapshot in db.collection(ORDERS).select(["items"]).stream():
        for item in snapshot.get("items") or []:
            ordered[item["sku"]] += int(item["quantity"])
    stock_now = {s.id: int(s.get("stock")) for s in db.collection(INVENTORY).stream()}
    taken = {sku: stock_before[sku] - stock_now.get(sku, 0) for sku in stock_before}
    done = FieldFilter("state", "==", "done")
    completed = FieldFilter("status", "==", OrderStatus.COMPLETED.value)
    notifications = warehouse.summary()["notifications"]
    return {
        "every order completed": _count(db.collection(ORDERS).where(filter=completed)) == orders,
        "stock taken equals stock ordered": taken == {sku: ordered[sku] for sku in taken},
        "one ledger entry per (order, action), done": (
            _count(db.collection_group(LEDGER)) == orders * len(ACTIONS)
            and _count(db.collection_group(LEDGER).where(filter=done)) == orders * len(ACTIONS)
        ),
        "one outbox record per (order, action)": (
            _count(db.collection(OUTBOX)) == orders * OUTBOX_ACTIONS
        ),
        "one notification per Idempotency-Key": notifications == orders,
        "no dead letters": _count(db.collection(DEAD_LETTERS)) == 0,
    }
