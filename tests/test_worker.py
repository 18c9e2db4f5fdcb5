"""The worker over real HTTP against the official Firestore emulator."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from google.cloud import firestore

from orders.contract import TaskPayload
from orders.schema import DEAD_LETTERS, INVENTORY, ORDERS, OUTBOX
from orders.settings import CloudSettings
from tests.conftest import seed_orders
from tests.servers import ServerThread
from worker.app import create_app
from worker.config import WorkerConfig


@pytest.fixture
def worker_url(project: str) -> Iterator[str]:
    config = WorkerConfig(cloud=CloudSettings(project=project), log_level="WARNING")
    with ServerThread(create_app(config)) as server:
        yield server.url


def deliver(url: str, payload: TaskPayload) -> requests.Response:
    return requests.post(
        f"{url}/tasks",
        data=payload.to_json(),
        headers={"Content-Type": "application/json", "X-CloudTasks-TaskName": "t"},
        timeout=30,
    )


def test_a_redelivered_task_changes_the_order_once(db: firestore.Client, worker_url: str) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "send_confirmation", 0, "run-1")
    first, second = deliver(worker_url, payload), deliver(worker_url, payload)
    assert (first.status_code, first.json()["outcome"]) == (200, "done")
    assert (second.status_code, second.json()["outcome"]) == (200, "already_done")
    order = db.collection(ORDERS).document(order_id).get().to_dict()
    assert order["actions"]["send_confirmation"]["state"] == "done"
    assert order["actions"]["send_confirmation"]["attempts"] == 1
    assert order["status"] == "pending"  # two actions are still to do
    outbox = list(db.collection(OUTBOX).stream())
    assert [doc.id for doc in outbox] == [f"{order_id}:send_confirmation"]


def test_concurrent_deliveries_take_stock_once(db: firestore.Client, worker_url: str) -> None:
    (order_id,) = seed_orders(db, 1, skus=1)
    quantity = db.collection(ORDERS).document(order_id).get().to_dict()["items"][0]["quantity"]
    payload = TaskPayload(order_id, "update_inventory", 0, "run-1")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: deliver(worker_url, payload), range(10)))
    outcomes = sorted(a.json()["outcome"] for a in answers if a.status_code == 200)
    assert outcomes.count("done") == 1, [(a.status_code, a.text) for a in answers]
    assert all(a.status_code in (200, 503) for a in answers)
    stock = db.collection(INVENTORY).document("sku-0").get().get("stock")
    assert stock == 1_000_000 - quantity


def test_the_last_action_completes_the_order(db: firestore.Client, worker_url: str) -> None:
    (order_id,) = seed_orders(db, 1)
    for action in ("send_confirmation", "update_inventory", "notify_warehouse"):
        assert deliver(worker_url, TaskPayload(order_id, action, 0, "r")).status_code == 200
    order = db.collection(ORDERS).document(order_id).get().to_dict()
    assert order["status"] == "completed"
    assert order["completedAt"] is not None


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"{oops", "application/json", "not valid JSON"),
        (b'{"orderId":"o"}', "application/json", "'action' is missing"),
        (TaskPayload("o", "send_confirmation", 0, "r").to_json(), "text/plain", "Content-Type"),
        (
            TaskPayload("missing", "send_confirmation", 0, "r").to_json(),
            "application/json",
            "does not exist",
        ),
        (TaskPayload("o", "launch_rocket", 0, "r").to_json(), "application/json", "unknown action"),
    ],
)
def test_hopeless_tasks_are_recorded_and_acknowledged(
    db: firestore.Client, worker_url: str, body: bytes, content_type: str, reason: str
) -> None:
    answer = requests.post(
        f"{worker_url}/tasks", data=body, headers={"Content-Type": content_type}, timeout=30
    )
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "rejected" and reason in answer.json()["error"]
    (letter,) = [doc.to_dict() for doc in db.collection(DEAD_LETTERS).stream()]
    assert reason in letter["reason"]


def test_other_methods_get_a_json_405(worker_url: str) -> None:
    answer = requests.get(f"{worker_url}/tasks", timeout=10)
    assert answer.status_code == 405
    assert answer.json()["error"] == "Method Not Allowed"
