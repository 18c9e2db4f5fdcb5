"""Property-based tests of the task contract and of the worker's ``POST /tasks``.

Arbitrary JSON shapes, Unicode (lone surrogates, non-BMP, NUL), huge and
negative numbers and arbitrary delivery headers. The invariant: 2xx with a
recorded outcome (done, or rejected in ``dead_letters``), 401/403 for auth, 400
for malformed delivery headers; never 500, and never 503 here (no dependency is
failing); and whatever happened, a clean delivery of the same action finishes it.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from hypothesis import example, given
from hypothesis import strategies as st

from orders.contract import TaskPayload, task_id
from orders.errors import PayloadError
from orders.schema import ACTIONS, DEAD_LETTERS, ORDERS
from tests.support.hostile import HOSTILE_ORDER_IDS, seed_named_orders, worker_stack
from tests.support.worker_setup import QUEUE, Sender

SEEDED = ("plain-order", *HOSTILE_ORDER_IDS[:4])
_names = itertools.count()

# Any code point, lone surrogates included (JSON can escape them), NUL and non-BMP too.
any_text = st.text(st.characters(exclude_categories=[]), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, -1, 10**30])
    | st.floats()
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
task_documents = st.fixed_dictionaries(
    {
        "orderId": st.sampled_from(SEEDED) | any_text,
        "action": st.sampled_from(ACTIONS) | any_text,
        "generation": st.integers(min_value=-(2**70), max_value=2**70) | json_values,
        "runId": any_text | json_values,
    },
    optional={"extra": json_values},
)
bodies = (
    task_documents.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=300)
)
# Header values requests can send: Latin-1 without control characters, trimmed.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=30,
).map(str.strip)
counts = st.integers(min_value=0, max_value=10).map(str) | header_text


# -- the contract, without a server ---------------------------------------------------


KNOWN_HOSTILE_BODIES = (  # found by hand before these properties existed: always tried
    b'{"orderId": "o\\ud800", "action": "send_confirmation", "generation": 0, "runId": "r"}',
    b'{"orderId": "o", "action": "send_confirmation", "generation": 9223372036854775808, '
    b'"runId": "r"}',
    b'{"generation": ' + b"1" * 5000 + b"}",
    b"[" * 5000,
)


@given(bodies)
@example(KNOWN_HOSTILE_BODIES[0])
@example(KNOWN_HOSTILE_BODIES[1])
@example(KNOWN_HOSTILE_BODIES[2])
@example(KNOWN_HOSTILE_BODIES[3])
def test_a_body_parses_to_a_valid_payload_or_a_payload_error(body: bytes) -> None:
    try:
        payload = TaskPayload.from_json(body)
    except PayloadError as exc:
        assert str(exc)
        return
    for text in (payload.order_id, payload.action, payload.run_id):
        text.encode("utf-8")  # no lone surrogate got through
    assert 0 <= payload.generation < 2**63
    assert TaskPayload.from_json(payload.to_json()) == payload


@given(st.text(min_size=1), st.sampled_from(ACTIONS), st.integers(0, 2**63 - 1))
def test_every_order_id_has_a_valid_task_id(order_id: str, action: str, generation: int) -> None:
    name = task_id(order_id, action, generation)
    assert 1 <= len(name) <= 500 and all(c.isascii() and (c.isalnum() or c in "_-") for c in name)


# -- the worker over HTTP ----------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_db(firestore_emulator: str) -> firestore.Client:
    db = firestore.Client(project=f"test-{uuid.uuid4().hex[:12]}")
    seed_named_orders(db, SEEDED)
    return db


@pytest.fixture(scope="module")
def shared_worker(shared_db: firestore.Client) -> Iterator[Sender]:
    with worker_stack(shared_db.project) as stack:
        yield stack.sender


def is_count(value: str) -> bool:
    return value == "" or (value.isascii() and value.isdigit() and len(value) <= 18)


def expected_status(auth: str, queue: str, task_name: str, retry: str, executions: str) -> int:
    if auth != "valid":
        return 401
    if queue != QUEUE:
        return 403
    if not task_name or not (is_count(retry) and is_count(executions)):
        return 400
    return 200


def dead_letters_of(db: firestore.Client, task_name: str) -> list[dict[str, Any]]:
    query = db.collection(DEAD_LETTERS).where(filter=FieldFilter("cloudTaskName", "==", task_name))
    return [doc.to_dict() for doc in query.stream()]


@given(
    body=bodies,
    auth=st.sampled_from(["valid", "valid", "valid", "none", "garbage"]),
    queue=st.just(QUEUE) | header_text,
    name_suffix=header_text,
    retry=counts,
    executions=counts,
)
@example(KNOWN_HOSTILE_BODIES[0], "valid", QUEUE, "", "0", "0")
@example(KNOWN_HOSTILE_BODIES[1], "valid", QUEUE, "", "0", "0")
@example(KNOWN_HOSTILE_BODIES[2], "valid", QUEUE, "", "0", "0")
@example(
    TaskPayload("plain-order", "send_confirmation", 0, "r").to_json(), "valid", QUEUE, "", "²", "0"
)
def test_every_delivery_is_answered_on_purpose(
    shared_worker: Sender,
    shared_db: firestore.Client,
    body: bytes,
    auth: str,
    queue: str,
    name_suffix: str,
    retry: str,
    executions: str,
) -> None:
    task_name = f"hyp-{next(_names)}-{uuid.uuid4().hex[:6]}{name_suffix}"
    headers = shared_worker.headers(
        **{
            "X-CloudTasks-QueueName": queue,
            "X-CloudTasks-TaskName": task_name,
            "X-CloudTasks-TaskRetryCount": retry,
            "X-CloudTasks-TaskExecutionCount": executions,
        }
    )
    headers["X-CloudTasks-QueueName"] = queue  # sent even when empty
    if auth == "none":
        del headers["Authorization"]
    elif auth == "garbage":
        headers["Authorization"] = "Bearer not.a.token"
    answer = shared_worker.post(body, headers)
    status = answer.status_code
    assert status == expected_status(auth, queue, task_name, retry, executions), answer.text
    document = answer.json()
    if status != 200:
        assert document["message"]
        return
    outcome = document["outcome"]
    assert outcome in ("done", "already_done", "rejected", "failed", "already_failed"), document
    if outcome == "rejected":
        assert document.get("recorded", True), document  # nothing here is unrecordable
        assert dead_letters_of(shared_db, task_name), document
    finish_cleanly(shared_worker, shared_db, body)


def finish_cleanly(worker: Sender, db: firestore.Client, body: bytes) -> None:
    """A clean delivery of the action a hostile body named (if it named one) completes it."""
    try:
        payload = TaskPayload.from_json(body)
    except PayloadError:
        return
    if payload.order_id not in SEEDED or payload.action not in ACTIONS:
        return
    clean = TaskPayload(payload.order_id, payload.action, 0, "clean-run")
    answer: requests.Response = worker.deliver(clean, **{"X-CloudTasks-TaskName": "clean"})
    assert (answer.status_code, answer.json()["outcome"]) in ((200, "done"), (200, "already_done"))
    order = db.collection(ORDERS).document(payload.order_id).get().to_dict()
    assert order is not None and order["actions"][payload.action]["state"] == "done"
