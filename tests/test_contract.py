"""The task contract: naming, encoding and the payload (pure logic, no servers)."""

from __future__ import annotations

import json
import random
import re

import pytest

from orders.contract import (
    MAX_TASK_ID_CHARS,
    TaskPayload,
    build_task,
    decode_order_id,
    encode_order_id,
    task_id,
)
from orders.errors import PayloadError, TaskIdError
from orders.settings import CloudSettings

ID_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
TRICKY_IDS = [
    "a",
    "A",
    "0",
    "_",
    "-",
    "__",
    "_5f",
    "_2d",
    "a-b",
    "a_b",
    "a_2db",
    "a b",
    "a/b",
    "a.b",
    "é",
    "e\u0301",
    "日本",
    "🙂",
    "order-1",
    "order_1",
    "order 1",
    "ORDER-1",
    "x" * 1500,
    "x" * 1499 + "y",
    "é" * 700,
    "_" * 200,
    "-" * 200,
    "a\0b",
    "a\nb",
    "%41",
    "_41",
    "A",
]


def test_ids_use_only_allowed_characters_and_fit_the_limit() -> None:
    for order_id in TRICKY_IDS:
        for generation in (0, 7, 12345):
            tid = task_id(order_id, "update_inventory", generation)
            assert ID_CHARS.match(tid), tid
            assert len(tid) <= MAX_TASK_ID_CHARS


def test_ids_are_injective_over_tricky_and_random_ids() -> None:
    rng = random.Random(1234)
    alphabet = "aA0_-/ .é日🙂\0"
    randoms = {
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)
    }
    order_ids = sorted(set(TRICKY_IDS) | randoms)
    seen: dict[str, tuple[str, str, int]] = {}
    for order_id in order_ids:
        for action in ("send_confirmation", "update_inventory"):
            for generation in (0, 1, 10):
                tid = task_id(order_id, action, generation)
                assert tid not in seen, (tid, seen.get(tid), (order_id, action, generation))
                seen[tid] = (order_id, action, generation)


def test_encoding_round_trips_and_never_emits_a_dash() -> None:
    for order_id in TRICKY_IDS:
        encoded = encode_order_id(order_id)
        assert "-" not in encoded
        assert decode_order_id(encoded) == order_id


def test_plain_ids_stay_readable_with_a_hash_prefix() -> None:
    tid = task_id("order-00042", "notify_warehouse", 3)
    prefix, encoded, action, generation = tid.split("-")
    assert re.fullmatch(r"[0-9a-f]{8}", prefix)
    assert decode_order_id(encoded) == "order-00042"
    assert (action, generation) == ("notify_warehouse", "g3")


def test_hash_prefixes_are_spread_not_sequential() -> None:
    prefixes = {task_id(f"order-{i:05d}", "send_confirmation", 0)[:2] for i in range(2000)}
    assert len(prefixes) > 200  # 256 possible two-hex-digit prefixes


def test_ids_are_deterministic_and_change_with_the_generation() -> None:
    assert task_id("o-1", "send_confirmation", 0) == task_id("o-1", "send_confirmation", 0)
    assert task_id("o-1", "send_confirmation", 0) != task_id("o-1", "send_confirmation", 1)


def test_long_ids_keep_a_readable_prefix_and_a_full_digest() -> None:
    tid = task_id("z" * 1500, "send_confirmation", 0)
    fields = tid.split("-")
    assert len(fields) == 5 and fields[1].startswith("zzz") and fields[2].startswith("x")
    assert len(fields[2]) == 65


@pytest.mark.parametrize(
    ("order_id", "action", "generation", "message"),
    [
        ("", "send_confirmation", 0, "empty"),
        ("o", "Bad-Action", 0, "action"),
        ("o", "a", -1, "generation"),
    ],
)
def test_bad_parts_are_refused_with_a_reason(
    order_id: str, action: str, generation: int, message: str
) -> None:
    with pytest.raises(TaskIdError, match=message):
        task_id(order_id, action, generation)


def test_payload_round_trips() -> None:
    payload = TaskPayload("o/1 é", "update_inventory", 2, "run-1")
    assert TaskPayload.from_json(payload.to_json()) == payload


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"action":"a","generation":0,"runId":"r"}', "'orderId' is missing"),
        (
            b'{"orderId":"o","action":"a","generation":"0","runId":"r"}',
            "'generation' must be a int",
        ),
        (
            b'{"orderId":"o","action":"a","generation":true,"runId":"r"}',
            "'generation' must be a int",
        ),
        (b'{"orderId":"","action":"a","generation":0,"runId":"r"}', "'orderId' is empty"),
        (b'{"orderId":"o","action":"a","generation":-1,"runId":"r"}', "0 or more"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_payloads_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        TaskPayload.from_json(body)


def test_built_task_follows_the_contract() -> None:
    settings = CloudSettings(
        project="p", location="l", queue="q", worker_url="https://w.example/base"
    )
    task = build_task(settings, TaskPayload("o-1", "send_confirmation", 0, "run-1"))
    assert task.name == "projects/p/locations/l/queues/q/tasks/" + task_id(
        "o-1", "send_confirmation", 0
    )
    request = task.http_request
    assert request.url == "https://w.example/base/tasks"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body)["orderId"] == "o-1"
    assert request.oidc_token.audience == "https://w.example/base"
    assert request.oidc_token.service_account_email == settings.invoker_email
    assert task.dispatch_deadline.total_seconds() == settings.dispatch_deadline_s


def test_a_runs_headers_go_on_its_tasks_only() -> None:
    settings = CloudSettings(project="p", location="l", queue="q")
    payload = TaskPayload("o-1", "send_confirmation", 0, "run-1")
    traced = build_task(settings, payload, {"traceparent": "00-a-b-01"})
    other = build_task(settings, payload, {"traceparent": "00-c-d-01", "Content-Type": "text/x"})
    plain = build_task(settings, payload)
    assert dict(traced.http_request.headers) == {
        "Content-Type": "application/json",
        "traceparent": "00-a-b-01",
    }
    assert dict(other.http_request.headers) == {
        "Content-Type": "text/x",
        "traceparent": "00-c-d-01",
    }
    assert dict(plain.http_request.headers) == {"Content-Type": "application/json"}
    assert build_task(settings, payload, {"traceparent": "00-a-b-01"}) == traced
