"""Firestore operations as Firestore bills them, counted on the client side; the naive design.

:class:`FirestoreBill` is a gRPC client interceptor. :func:`counted` puts it on
every channel the official Firestore client opens to the emulator (the
client's own ``grpc.insecure_channel``) while a client is being built, so the
code measured is the production code unchanged. It counts, per RPC:

- a read per document a BatchGetDocuments asks for (found or missing: Firestore
  bills a missing document too), at least one per RunQuery (documents
  returned, at least one);
- a write per write of a Commit that sets or updates a document, its field
  transforms included in that write; a delete per deleting write (billed apart);
- BeginTransaction and Rollback are not billed.

:func:`naive_action` is the obvious design to compare with: one read-modify-write
transaction per action (read the order and its ledger entry, and the stock;
write the ledger entry, the order, the stock or the outbox document).
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import urllib3
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from orders.schema import ACTIONS, INVENTORY, LEDGER, ORDERS, OUTBOX


class FirestoreBill(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Counts RPCs, and document reads, writes and deletes as Firestore bills them."""

    def __init__(self) -> None:
        """Start from zero."""
        self.rpcs: collections.Counter[str] = collections.Counter()
        self.reads = 0
        self.writes = 0
        self.deletes = 0
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        """Count a unary call (Commit, BeginTransaction, Rollback, GetDocument)."""
        self._count(details.method, request)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        """Count a streaming call (BatchGetDocuments, RunQuery)."""
        self._count(details.method, request)
        return continuation(details, request)

    def _count(self, method: str, request: Any) -> None:
        name = method.rsplit("/", 1)[-1]
        with self._lock:
            self.rpcs[name] += 1
            if name == "BatchGetDocuments":
                self.reads += len(request.documents)
            elif name in ("GetDocument", "RunQuery"):
                self.reads += 1  # a query's documents are not known here: its minimum
            elif name == "Commit":
                deletes = sum(1 for write in request.writes if write.delete)
                self.deletes += deletes
                self.writes += len(request.writes) - deletes

    def per(self, orders: int, prefix: str = "") -> dict[str, float]:
        """Return the counts per order, keyed ``{prefix}billed_reads_per_order`` etc."""
        return {
            f"{prefix}billed_reads_per_order": round(self.reads / orders, 2),
            f"{prefix}billed_writes_per_order": round(self.writes / orders, 2),
            f"{prefix}billed_deletes_per_order": round(self.deletes / orders, 2),
            f"{prefix}rpcs_per_order": round(sum(self.rpcs.values()) / orders, 2),
        }


@contextlib.contextmanager
def counted(bill: FirestoreBill) -> Iterator[None]:
    """Put ``bill`` on every insecure (emulator) channel opened inside the block."""
    original = grpc.insecure_channel

    def insecure_channel(target: str, *args: Any, **kwargs: Any) -> grpc.Channel:
        return grpc.intercept_channel(original(target, *args, **kwargs), bill)

    grpc.insecure_channel = insecure_channel
    try:
        yield
    finally:
        grpc.insecure_channel = original


def naive_action(
    db: firestore.Client, order_id: str, action: str, post: Callable[[dict[str, Any]], None]
) -> None:
    """Perform ``action`` of ``order_id`` in one read-modify-write transaction."""
    order_ref = db.collection(ORDERS).document(order_id)
    ledger_ref = order_ref.collection(LEDGER).document(action)
    prefix = FieldPath("actions", action).to_api_repr()

    @firestore.transactional
    def run(transaction: firestore.Transaction) -> None:
        pair = db.get_all([order_ref, ledger_ref], transaction=transaction)
        read = {snapshot.reference.path: snapshot for snapshot in pair}
        if read[ledger_ref.path].exists:
            return  # done already
        order = read[order_ref.path].to_dict() or {}
        wanted: dict[str, int] = collections.Counter()
        for item in order["items"]:
            wanted[item["sku"]] += item["quantity"]
        if action == "update_inventory":
            refs = [db.collection(INVENTORY).document(sku) for sku in sorted(wanted)]
            for snapshot in db.get_all(refs, transaction=transaction):
                stock = snapshot.get("stock") - wanted[snapshot.id]
                transaction.update(snapshot.reference, {"stock": stock})
        else:
            message = {
                "orderId": order_id,
                "action": action,
                "items": [{"sku": k, "quantity": q} for k, q in sorted(wanted.items())],
            }
            post(message)
            outbox = db.collection(OUTBOX).document(f"{order_id}:{action}")
            transaction.create(outbox, {**message, "createdAt": firestore.SERVER_TIMESTAMP})
        transaction.create(ledger_ref, {"state": "done", "completedAt": firestore.SERVER_TIMESTAMP})
        update: dict[str, Any] = {
            f"{prefix}.state": "done",
            f"{prefix}.completedAt": firestore.SERVER_TIMESTAMP,
            "actionsDone": firestore.Increment(1),
        }
        others = [name for name in ACTIONS if name != action]
        if all((order.get("actions") or {}).get(a, {}).get("state") == "done" for a in others):
            update.update(status="completed", completedAt=firestore.SERVER_TIMESTAMP)
        transaction.update(order_ref, update)

    run(db.transaction())


def poster(url: str) -> Callable[[dict[str, Any]], None]:
    """Return a function that POSTs a message to ``url`` with its idempotency key."""
    pool = urllib3.PoolManager(maxsize=32)

    def post(message: dict[str, Any]) -> None:
        key = f"{message['orderId']}:{message['action']}"
        pool.request(
            "POST",
            url,
            body=json.dumps({"idempotencyKey": key, "message": message}).encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
            retries=False,
        )

    return post
