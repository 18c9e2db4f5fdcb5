"""Hostile input to the worker's /tasks: every case answered on purpose, nothing retried forever.

Real HTTP, the official Firestore emulator, verified callers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from google.cloud import firestore

from orders.contract import TaskPayload
from orders.schema import ACTIONS, DEAD_LETTERS, ORDERS, OUTBOX
from tests.support.hostile import HOSTILE_ORDER_IDS, Stack, seed_named_orders, worker_stack
from tests.support.worker_setup import Sender
from worker.errors import TransientTaskError
from worker.outbox import outbox_key
from worker.rejections import Rejections

TASK = "projects/p/locations/l/queues/order-actions/tasks/hostile-1"


@pytest.fixture
def stack(project: str) -> Iterator[Stack]:
    with worker_stack(project) as started:
        yield started


@pytest.fixture
def worker(stack: Stack) -> Sender:
    return stack.sender


def letter(db: firestore.Client, task_id: str = "hostile-1") -> dict | None:
    return db.collection(DEAD_LETTERS).document(task_id).get().to_dict()


def body(order_id: object, action: object, generation: object, run_id: object) -> bytes:
    """A task body written by hand (``ensure_ascii``: lone surrogates travel as escapes)."""
    document = {"orderId": order_id, "action": action, "generation": generation, "runId": run_id}
    return json.dumps(document).encode()


@pytest.mark.parametrize("order_id", HOSTILE_ORDER_IDS)
def test_any_firestore_order_id_completes_with_an_ascii_idempotency_key(
    db: firestore.Client, stack: Stack, order_id: str
) -> None:
    worker, warehouse = stack.sender, stack.warehouse
    seed_named_orders(db, [order_id])
    for action in ACTIONS:
        answer = worker.deliver(TaskPayload(order_id, action, 0, "run-1"))
        assert (answer.status_code, answer.json()["outcome"]) == (200, "done"), answer.text
    assert db.collection(ORDERS).document(order_id).get().get("status") == "completed"
    key = outbox_key(order_id, "notify_warehouse")
    assert key.isascii() and warehouse.count(key) == 1
    assert warehouse.received()[key]["orderId"] == order_id  # the body carries the id as it is
    outbox = db.collection(OUTBOX).document(key).get().to_dict()
    assert outbox is not None and outbox["orderId"] == order_id


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (body("o", "send_confirmation", 2**63, "r"), "generation"),
        (body("o", "send_confirmation", -(2**63) - 1, "r"), "generation"),
        (body("o\ud800", "send_confirmation", 0, "r"), "orderId"),
        (body("o", "send_confirmation", 0, "\udfff"), "runId"),
        (body("o", "send_\ud83d", 0, "r"), "action"),
        (b'{"orderId": "o", "action": "send_confirmation", "runId": "r", "generation": 1'
         + b"1" * 5000 + b"}", "JSON"),
        (b"[" * 30000 + b"]" * 30000, "JSON"),
    ],
)  # fmt: skip
def test_a_body_that_can_never_succeed_is_rejected_and_recorded(
    db: firestore.Client, worker: Sender, document: bytes, field: str
) -> None:
    answer = worker.post(document, worker.headers(**{"X-CloudTasks-TaskName": TASK}))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "rejected"), answer.text
    assert field in answer.json()["error"]
    recorded = letter(db)
    assert recorded is not None and field in recorded["reason"]


def test_an_unrecordable_rejection_is_acknowledged_and_logged(
    db: firestore.Client,
    worker: Sender,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def unrecordable(*args: object) -> None:
        raise ValueError("the secret detail")

    monkeypatch.setattr(Rejections, "record_rejection", unrecordable)
    answer = worker.post(b"not json", worker.headers())
    assert answer.status_code == 200 and answer.json()["outcome"] == "rejected"
    assert answer.json()["recorded"] is False and "secret" not in answer.text
    assert "the secret detail" in caplog.text  # the log is the record


def test_a_transient_failure_to_record_a_rejection_is_retried(
    worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(*args: object) -> None:
        raise TransientTaskError("Firestore is busy") from ConnectionError("10.0.0.7 refused")

    monkeypatch.setattr(Rejections, "record_rejection", busy)
    answer = worker.post(b"not json", worker.headers())
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert "10.0.0.7" not in answer.text  # the wrapped exception stays in the log


@pytest.mark.parametrize("count", ["²", "¹0", "1" * 5000, "-1", "+1", "0x1", "1.0"])
def test_a_malformed_retry_count_header_answers_400(
    db: firestore.Client, worker: Sender, count: str
) -> None:
    payload = TaskPayload("o", "send_confirmation", 0, "r").to_json()
    answer = worker.post(payload, worker.headers(**{"X-CloudTasks-TaskRetryCount": count}))
    assert answer.status_code == 400, answer.text
    assert "X-CloudTasks-TaskRetryCount" in answer.json()["message"]
    assert list(db.collection(DEAD_LETTERS).stream()) == []  # not a delivery: nothing recorded
