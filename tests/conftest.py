"""Fixtures that start real servers and clean up after themselves.

The official Firestore emulator runs once per session in its own process group.
Each test gets its own Firestore project id, so tests never see each other's data.
Outside CI a missing emulator skips the tests that need it; in CI (CI=true) it
fails them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import firestore

from localcloud.errors import LocalCloudError
from localcloud.firestore_emulator import emulator_host
from localcloud.tasks.server import TasksEmulator
from orders.schema import INVENTORY, ORDERS, new_order
from tests.hypothesis_profiles import load_profile
from tests.receiver import Receiver

load_profile()  # HYPOTHESIS_PROFILE=deep for many more examples (see the README)


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[str]:
    """Return FIRESTORE_EMULATOR_HOST for a running official emulator."""
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(emulator_host())
        except LocalCloudError as exc:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"the Firestore emulator could not start in CI: {exc}")
            pytest.skip(f"the Firestore emulator could not start: {exc}")
        yield host


@pytest.fixture
def tasks_emulator() -> Iterator[TasksEmulator]:
    """Return a running Cloud Tasks emulator (with its OIDC issuer), stopped after the test."""
    emulator = TasksEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Return a recording HTTP task target, closed after the test."""
    started = Receiver()
    yield started
    started.close()


@pytest.fixture
def project(firestore_emulator: str) -> str:
    """Return a Firestore project id of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db(project: str) -> firestore.Client:
    """Return a Firestore client on this test's project, in the emulator."""
    return firestore.Client(project=project)


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
        if (i + 1) % 400 == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()
    return ids
