"""Order ids a hostile (or merely international) client may use, and how to seed them.

Every id here is one Firestore accepts as a document id: at most 1,500 bytes of
UTF-8, no ``/``, not ``.`` or ``..``, not ``__.*__``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from google.cloud import firestore

from localcloud.oidc import LocalIssuer
from localcloud.warehouse import WarehouseReceiver
from orders.schema import INVENTORY, ORDERS, new_order
from tests.support.servers import ServerThread
from tests.support.worker_setup import Sender, worker_config
from worker.app import create_app

LONG_ID = "é" * 100 + "x" * 1300  # 1,400 characters, exactly Firestore's 1,500 bytes
HOSTILE_ORDER_IDS = (
    "weird id é中",  # outside Latin-1: cannot be an HTTP header value as it is
    "a..b",
    "..hidden",
    "100%2F200",
    "with spaces  and\ttab",
    "\U0001d518\U0001d52b \U0001f389",  # outside the BMP (Fraktur letters, an emoji)
    "a:b?c#d[e]@f!$&'()*+,;=",
    "__init",
    "nul\x00and\nnewline",  # control characters
    LONG_ID,
)
SKU = "sku-0"


def seed_named_orders(db: firestore.Client, order_ids: tuple[str, ...] | list[str]) -> None:
    """Create a pending order (one item of :data:`SKU`) for each id, and plenty of stock."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    batch = db.batch()
    batch.set(db.collection(INVENTORY).document(SKU), {"stock": 1_000_000})
    for i, order_id in enumerate(order_ids):
        doc = new_order(f"c{i}@example.com", [{"sku": SKU, "quantity": 1}], base)
        batch.set(db.collection(ORDERS).document(order_id), doc)
    batch.commit()


@dataclass
class Stack:
    """A worker (reached through ``sender``) and the warehouse it notifies."""

    sender: Sender
    warehouse: WarehouseReceiver


@contextlib.contextmanager
def worker_stack(project: str) -> Iterator[Stack]:
    """Serve a worker on Firestore ``project`` with its own issuer and warehouse."""
    with LocalIssuer() as issuer, WarehouseReceiver() as warehouse:
        config = worker_config(project, issuer.issuer_url, issuer.certs_url, warehouse.url)
        with ServerThread(create_app(config)) as server:
            yield Stack(Sender(server.url, issuer), warehouse)
