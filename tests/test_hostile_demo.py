"""End to end on the demo stack: orders with hostile ids all complete, each effect once.

The whole local cloud (Firestore emulator, Cloud Tasks emulator, worker and
fanout under gunicorn) runs as ``localcloud demo`` runs it; only the orders differ.
"""

from __future__ import annotations

import pytest
from google.cloud import firestore

from localcloud.demo import trigger_fanout
from localcloud.stack import LocalStack, StackOptions
from orders.schema import INVENTORY, LEDGER, ORDERS, OUTBOX
from tests.support.hostile import HOSTILE_ORDER_IDS, SKU, seed_named_orders
from tests.support.receiver import wait_for
from worker.outbox import outbox_key

COMPLETION_TIMEOUT_S = 120.0


@pytest.mark.usefixtures("firestore_emulator")  # skips outside CI, fails in CI, when missing
def test_orders_with_hostile_ids_complete_end_to_end_each_effect_once() -> None:
    ids = HOSTILE_ORDER_IDS
    assert any(len(i) == 1400 for i in ids) and any(".." in i for i in ids)
    assert any("%2F" in i for i in ids) and any(" " in i for i in ids)
    assert any(not i.isascii() for i in ids)
    stack = LocalStack(StackOptions(gunicorn_workers=1, gunicorn_threads=8))
    stack.start()
    try:
        db = firestore.Client(project=stack.options.project)
        seed_named_orders(db, ids)
        summary = trigger_fanout(stack)
        orders = db.collection(ORDERS)

        def all_completed() -> bool:
            states = [orders.document(i).get().get("status") for i in ids]
            return states == ["completed"] * len(ids)

        wait_for(all_completed, timeout_s=COMPLETION_TIMEOUT_S)
        stats = stack.tasks.stats()
        warehouse = stack.warehouse.summary()
    finally:
        stack.stop()
    assert summary["tasks_created"] == 3 * len(ids) and stats["deduplicated"] == 0
    assert warehouse["notifications"] == len(ids)  # one key per order (a retry repeats its key)
    received = stack.warehouse.received()
    for order_id in ids:
        assert received[outbox_key(order_id, "notify_warehouse")]["orderId"] == order_id
        ledger = orders.document(order_id).collection(LEDGER).stream()
        assert sorted(entry.get("state") for entry in ledger) == ["done"] * 3
    assert len(list(db.collection(OUTBOX).stream())) == 2 * len(ids)  # e-mail and warehouse
    stock = db.collection(INVENTORY).document(SKU).get().get("stock")
    assert stock == 1_000_000 - len(ids)  # one unit each, taken once
    stack.remove_logs()
