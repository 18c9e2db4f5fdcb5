"""The worker over real HTTP against the official Firestore emulator, with verified callers."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore

from localcloud.chaos.links import StallingTcpProxy
from localcloud.oidc import LocalIssuer
from localcloud.processes import ManagedProcess, free_port, http_ok
from localcloud.warehouse import WarehouseReceiver
from orders.contract import TaskPayload
from orders.schema import ACTIONS, DEAD_LETTERS, INVENTORY, LEDGER, ORDERS, OUTBOX
from orders.writes import Writes
from tests.support.ports import refused_port
from tests.support.receiver import wait_for
from tests.support.seeding import seed_orders
from tests.support.servers import ServerThread
from tests.support.worker_setup import AUDIENCE, INVOKER, QUEUE, Sender, worker_config
from worker.actions import REGISTRY, ActionContext
from worker.actions.confirmation import send_confirmation
from worker.actions.inventory import update_inventory
from worker.app import create_app
from worker.config import WorkerConfig
from worker.ledger import Ledger
from worker.rejections import Rejections


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with LocalIssuer() as started:
        yield started


@pytest.fixture
def warehouse() -> Iterator[WarehouseReceiver]:
    with WarehouseReceiver() as started:
        yield started


@pytest.fixture
def worker(project: str, issuer: LocalIssuer, warehouse: WarehouseReceiver) -> Iterator[Sender]:
    config = worker_config(project, issuer.issuer_url, issuer.certs_url, warehouse.url)
    with ServerThread(create_app(config)) as server:
        yield Sender(server.url, issuer)


def order(db: firestore.Client, order_id: str) -> dict:
    return db.collection(ORDERS).document(order_id).get().to_dict()


def ledger(db: firestore.Client, order_id: str, action: str) -> dict | None:
    ref = db.collection(ORDERS).document(order_id).collection(LEDGER).document(action)
    return ref.get().to_dict()


def stock(db: firestore.Client, sku: str = "sku-0") -> int:
    return int(db.collection(INVENTORY).document(sku).get().get("stock"))


def test_a_redelivered_task_changes_the_order_once(db: firestore.Client, worker: Sender) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "send_confirmation", 0, "run-1")
    first = worker.deliver(payload)
    second = worker.deliver(payload, retry_count=1)
    assert (first.status_code, first.json()["outcome"]) == (200, "done")
    assert (second.status_code, second.json()["outcome"]) == (200, "already_done")
    action = order(db, order_id)["actions"]["send_confirmation"]
    assert action["state"] == "done" and action["attempts"] == 1
    assert order(db, order_id)["status"] == "pending"  # two actions are still to do
    entry = ledger(db, order_id, "send_confirmation")
    assert entry is not None and entry["state"] == "done"
    assert (entry["cloudTaskName"], entry["queueName"], entry["retryCount"]) == ("task-1", QUEUE, 0)
    assert entry["executionCount"] == 0
    outbox = [doc.to_dict() for doc in db.collection(OUTBOX).stream()]
    assert len(outbox) == 1 and outbox[0]["state"] == "pending"  # no mailer: left for a relay


@pytest.mark.parametrize(
    ("action", "claim_first"),
    [("update_inventory", False), ("notify_warehouse", False), ("notify_warehouse", True)],
)
def test_ten_simultaneous_deliveries_take_effect_once(
    db: firestore.Client,
    project: str,
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
    action: str,
    claim_first: bool,
) -> None:
    (order_id,) = seed_orders(db, 1, skus=1)
    before = stock(db)
    quantity = order(db, order_id)["items"][0]["quantity"]
    payload = TaskPayload(order_id, action, 0, "run-1")
    config = worker_config(
        project, issuer.issuer_url, issuer.certs_url, warehouse.url, claim_before_post=claim_first
    )
    with ServerThread(create_app(config)) as server, ThreadPoolExecutor(10) as pool:
        worker = Sender(server.url, issuer)
        answers = list(pool.map(lambda i: worker.deliver(payload, retry_count=i), range(10)))
    outcomes = [(a.status_code, a.json()["outcome"]) for a in answers]
    assert outcomes.count((200, "done")) == 1, outcomes
    assert set(outcomes) <= {(200, "done"), (200, "already_done"), (409, "busy")}, outcomes
    assert order(db, order_id)["actions"][action]["state"] == "done"
    assert order(db, order_id)["actionsDone"] == 1
    if action == "update_inventory":
        assert stock(db) == before - quantity
    else:
        assert stock(db) == before
        seen = warehouse.summary()
        if claim_first:  # the claim kept the others from posting
            assert seen == {"notifications": 1, "deliveries": 1, "duplicates": 0}
        else:  # racing deliveries may each post; the receiver acts on the key once
            assert seen["notifications"] == 1 and 1 <= seen["deliveries"] <= 10
            assert seen["duplicates"] == seen["deliveries"] - 1
            assert (409, "busy") not in outcomes  # no claim was written to be busy on
        (notification,) = warehouse.received().values()
        assert notification["orderId"] == order_id
        assert notification["message"]["items"] == [{"sku": "sku-0", "quantity": quantity}]
        outbox = db.collection(OUTBOX).document(f"{order_id}:{action}").get().to_dict()
        assert outbox["state"] == "delivered" and outbox["kind"] == "warehouse"


def test_the_last_action_completes_the_order(db: firestore.Client, worker: Sender) -> None:
    (order_id,) = seed_orders(db, 1)
    for action in ACTIONS:
        assert worker.deliver(TaskPayload(order_id, action, 0, "r")).json()["outcome"] == "done"
    completed = order(db, order_id)
    assert completed["status"] == "completed" and completed["completedAt"] is not None
    assert completed["actionsDone"] == len(ACTIONS)


def test_every_action_is_registered_once() -> None:
    assert sorted(REGISTRY) == sorted(ACTIONS)


def kill_mid_post(
    payload: TaskPayload,
    spec: dict[str, Any],
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
    tmp_path: Path,
) -> None:
    """Serve a worker in a child process and SIGKILL it while it posts ``payload``'s effect."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.worker_setup", json.dumps({"port": port, **spec})]
    doomed = ManagedProcess("doomed-worker", argv, tmp_path / "worker.log")
    doomed.start()
    try:
        doomed.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60)
        warehouse.delay_s = 120  # the warehouse holds the first delivery: kill it meanwhile
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(Sender(f"http://127.0.0.1:{port}", issuer).deliver, payload)
            wait_for(lambda: warehouse.deliveries == 1, timeout_s=60)
            assert doomed.pid is not None
            os.killpg(doomed.pid, signal.SIGKILL)
            with pytest.raises(requests.ConnectionError):
                pending.result(timeout=60)
    finally:
        doomed.stop()
    warehouse.delay_s = 0


@pytest.mark.parametrize("claim_first", [False, True])
def test_a_killed_delivery_is_completed_by_the_next(
    db: firestore.Client,
    project: str,
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
    tmp_path: Path,
    claim_first: bool,
) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "notify_warehouse", 0, "r")
    spec = {
        "project": project,
        "issuer_url": issuer.issuer_url,
        "certs_url": issuer.certs_url,
        "warehouse_url": warehouse.url,
        "claim_before_post": claim_first,
    }
    kill_mid_post(payload, spec, issuer, warehouse, tmp_path)
    killed = ledger(db, order_id, "notify_warehouse")
    config = worker_config(
        project, issuer.issuer_url, issuer.certs_url, warehouse.url, claim_before_post=claim_first
    )
    answers: list[requests.Response] = []
    with ServerThread(create_app(config)) as server:
        worker = Sender(server.url, issuer)

        def redeliver() -> bool:
            answers.append(worker.deliver(payload, retry_count=1))  # not the last attempt
            return answers[-1].status_code == 200

        wait_for(redeliver, timeout_s=60)
    assert answers[-1].json()["outcome"] == "done"
    entry = ledger(db, order_id, "notify_warehouse")
    assert entry is not None and entry["state"] == "done"
    if claim_first:
        # The claim outlived its process by its short lease: 409 meanwhile, retried with
        # the task's backoff, never throttling the queue; then it was taken over.
        assert killed is not None and killed["state"] == "claimed"
        assert all((a.status_code, a.json()["outcome"]) == (409, "busy") for a in answers[:-1])
        assert entry["takenOverFrom"] == killed["claimId"] and entry["attempts"] == 2
    else:  # nothing was written before the POST: the next delivery did it at once
        assert killed is None and len(answers) == 1
        assert "takenOverFrom" not in entry
    assert order(db, order_id)["actions"]["notify_warehouse"]["state"] == "done"
    # The warehouse saw the key twice and kept it once: the Idempotency-Key did its job.
    assert warehouse.summary() == {"notifications": 1, "deliveries": 2, "duplicates": 1}


def test_the_auth_matrix(db: firestore.Client, worker: Sender, issuer: LocalIssuer) -> None:
    (order_id,) = seed_orders(db, 1)
    body = TaskPayload(order_id, "send_confirmation", 0, "r").to_json()
    with LocalIssuer() as stranger:
        forged = stranger.mint(AUDIENCE, INVOKER)
    cases = [
        ("no token", "", 401, "no Authorization header"),
        ("bad signature", forged, 401, "does not verify"),
        ("expired", issuer.mint(AUDIENCE, INVOKER, lifetime_s=-60), 401, "does not verify"),
        ("wrong audience", issuer.mint("http://other.test", INVOKER), 401, "audience"),
        ("wrong email", issuer.mint(AUDIENCE, "someone@else.test"), 403, "not allowed"),
    ]
    for name, token, status, words in cases:
        auth = f"Bearer {token}" if token else ""
        answer = worker.post(body, worker.headers(Authorization=auth))
        assert answer.status_code == status, name
        assert answer.json()["error"] in ("Unauthorized", "Forbidden")
        assert words in answer.json()["message"], (name, answer.json())
    assert order(db, order_id)["actions"]["send_confirmation"]["state"] == "pending"
    assert list(db.collection(DEAD_LETTERS).stream()) == []
    other_queue = worker.post(body, worker.headers(**{"X-CloudTasks-QueueName": "other"}))
    assert other_queue.status_code == 403 and "not this worker's queue" in other_queue.text
    no_queue = worker.post(body, worker.headers(**{"X-CloudTasks-QueueName": ""}))
    assert no_queue.status_code == 403
    valid = worker.post(body, worker.headers())
    assert (valid.status_code, valid.json()["outcome"]) == (200, "done")


def test_a_token_from_an_untrusted_issuer_is_refused(
    project: str, issuer: LocalIssuer, warehouse: WarehouseReceiver
) -> None:
    config = worker_config(project, "https://accounts.google.com", issuer.certs_url, warehouse.url)
    with ServerThread(create_app(config)) as server:
        answer = Sender(server.url, issuer).deliver(TaskPayload("o", "send_confirmation", 0, "r"))
    assert answer.status_code == 401 and "not trusted" in answer.json()["message"]


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
        (b"{" + b" " * 70_000 + b"}", "application/json", "byte limit"),
    ],
)
def test_hopeless_tasks_are_dead_lettered_and_acknowledged(
    db: firestore.Client, worker: Sender, body: bytes, content_type: str, reason: str
) -> None:
    answer = worker.post(body, worker.headers(**{"Content-Type": content_type}))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "rejected" and reason in answer.json()["error"]
    (letter,) = [doc.to_dict() for doc in db.collection(DEAD_LETTERS).stream()]
    assert reason in letter["reason"] and letter["cloudTaskName"] == "task-1"


def test_cancelled_orders_and_short_stock_fail_for_good(
    db: firestore.Client, worker: Sender
) -> None:
    cancelled, short = seed_orders(db, 2, skus=1)
    db.collection(ORDERS).document(cancelled).update({"status": "cancelled"})
    db.collection(INVENTORY).document("sku-0").update({"stock": 0})
    cases = [
        (cancelled, "send_confirmation", "is cancelled", "cancelled"),
        (short, "update_inventory", "insufficient stock", "failed"),
    ]
    for order_id, action, reason, status in cases:
        payload = TaskPayload(order_id, action, 0, "r")
        answer = worker.deliver(payload)
        assert (answer.status_code, answer.json()["outcome"]) == (200, "failed")
        assert reason in answer.json()["error"]
        recorded = order(db, order_id)
        assert recorded["status"] == status
        assert recorded["actions"][action]["state"] == "failed"
        assert reason in recorded["actions"][action]["lastError"]
        entry = ledger(db, order_id, action)
        assert entry is not None and entry["state"] == "failed" and reason in entry["error"]
        again = worker.deliver(payload, retry_count=1)
        assert (again.status_code, again.json()["outcome"]) == (200, "already_failed")
    assert stock(db) == 0


def test_a_failed_action_runs_again_under_the_next_generation(
    db: firestore.Client, worker: Sender
) -> None:
    (order_id,) = seed_orders(db, 1)
    db.collection(INVENTORY).document("sku-0").update({"stock": 0})
    first = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r1"))
    assert first.json()["outcome"] == "failed"
    db.collection(INVENTORY).document("sku-0").update({"stock": 10})  # restocked
    same = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r1"), retry_count=1)
    assert same.json()["outcome"] == "already_failed"  # a redelivery of the failed task
    rerun = worker.deliver(TaskPayload(order_id, "update_inventory", 1, "r2"))
    assert (rerun.status_code, rerun.json()["outcome"]) == (200, "done")
    entry = ledger(db, order_id, "update_inventory")
    assert entry is not None and entry["state"] == "done" and "error" not in entry
    assert order(db, order_id)["actions"]["update_inventory"]["state"] == "done"
    assert stock(db) == 10 - order(db, order_id)["items"][0]["quantity"]


def test_unusable_ids_and_stock_records_fail_for_good(db: firestore.Client, worker: Sender) -> None:
    for bad_id in ("__reserved__", ".."):
        answer = worker.deliver(TaskPayload(bad_id, "send_confirmation", 0, "r"))
        assert (answer.status_code, answer.json()["outcome"]) == (200, "rejected"), bad_id
    (order_id,) = seed_orders(db, 1)
    db.collection(INVENTORY).document("sku-0").set({"note": "no stock field"})
    answer = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "failed")
    assert "insufficient stock" in answer.json()["error"]


def test_a_warehouse_failure_is_retried_and_leaves_nothing_half_done(
    db: firestore.Client, worker: Sender, warehouse: WarehouseReceiver
) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "notify_warehouse", 0, "r")
    warehouse.fail_next(1, 503)
    failed = worker.deliver(payload)
    assert (failed.status_code, failed.json()["outcome"]) == (503, "retry")
    assert failed.headers["Retry-After"] == "1" and "HTTP 503" in failed.json()["error"]
    assert ledger(db, order_id, "notify_warehouse") is None  # the claim was released
    assert order(db, order_id)["actions"]["notify_warehouse"]["state"] == "pending"
    assert list(db.collection(OUTBOX).stream()) == []
    retried = worker.deliver(payload, retry_count=1)
    assert (retried.status_code, retried.json()["outcome"]) == (200, "done")
    assert warehouse.summary() == {"notifications": 1, "deliveries": 2, "duplicates": 0}


def test_the_last_attempt_is_dead_lettered(
    db: firestore.Client, worker: Sender, warehouse: WarehouseReceiver
) -> None:
    (order_id,) = seed_orders(db, 1)
    warehouse.fail_next(1, 500)
    answer = worker.deliver(TaskPayload(order_id, "notify_warehouse", 0, "r"), retry_count=99)
    assert (answer.status_code, answer.json()["outcome"]) == (503, "dead_lettered")
    (letter,) = [doc.to_dict() for doc in db.collection(DEAD_LETTERS).stream()]
    assert letter["lastAttempt"] is True and "HTTP 500" in letter["reason"]
    assert letter["retryCount"] == 99 and letter["orderId"] == order_id
    action = order(db, order_id)["actions"]["notify_warehouse"]
    assert action["state"] == "dead_lettered" and "HTTP 500" in action["lastError"]


def test_an_unreachable_firestore_answers_503_and_writes_nothing(
    db: firestore.Client,
    project: str,
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (order_id,) = seed_orders(db, 1)
    config = worker_config(
        project, issuer.issuer_url, issuer.certs_url, warehouse.url, rpc_timeout_s=1.0
    )
    with (
        refused_port() as port,
        monkeypatch.context() as patched,  # the app's client talks to a port nobody serves
    ):
        patched.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{port}")
        app = create_app(config)
        with ServerThread(app) as server:
            answer = Sender(server.url, issuer).deliver(
                TaskPayload(order_id, "update_inventory", 0, "r")
            )
    assert (answer.status_code, answer.json()["outcome"]) == (503, "retry")
    assert answer.headers["Retry-After"] == "1"
    assert order(db, order_id)["actions"]["update_inventory"]["state"] == "pending"
    assert ledger(db, order_id, "update_inventory") is None
    assert stock(db) == 1_000_000
    assert list(db.collection(DEAD_LETTERS).stream()) == []


def test_errors_are_json(worker: Sender) -> None:
    answer = requests.get(f"{worker.url}/tasks", timeout=10)
    assert answer.status_code == 405 and answer.json()["error"] == "Method Not Allowed"
    bad = worker.post(b"{}", worker.headers(**{"X-CloudTasks-TaskRetryCount": "x"}))
    assert bad.status_code == 400 and "X-CloudTasks-TaskRetryCount" in bad.json()["message"]
    assert requests.get(f"{worker.url}/healthz", timeout=10).json()["status"] == "ok"


@pytest.fixture
def short_lease(project: str, issuer: LocalIssuer, warehouse: WarehouseReceiver) -> WorkerConfig:
    """A worker that claims before posting, claims that live 2 s, renewed every 0.2 s.

    Its POSTs may take long.
    """
    return worker_config(
        project, issuer.issuer_url, issuer.certs_url, warehouse.url, lease_s=2.0,
        heartbeat_s=0.2, delivery_timeout_s=60.0, claim_before_post=True,
    )  # fmt: skip


def test_a_slow_live_delivery_keeps_its_claim_past_the_lease(
    db: firestore.Client,
    short_lease: WorkerConfig,
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "notify_warehouse", 0, "r")
    warehouse.delay_s = 5  # two and a half leases: the heartbeat must keep the claim
    with ServerThread(create_app(short_lease)) as server, ThreadPoolExecutor(1) as pool:
        worker = Sender(server.url, issuer)
        slow = pool.submit(worker.deliver, payload)
        wait_for(lambda: warehouse.deliveries == 1, timeout_s=30)
        claimed = ledger(db, order_id, "notify_warehouse")
        busy: list[requests.Response] = []
        while not slow.done():  # redeliveries meanwhile, after the first lease has run out too
            busy.append(worker.deliver(payload, retry_count=1))
            wait([slow], timeout=0.1)  # the next redelivery, or the slow one's answer
        done = slow.result(timeout=60)
    assert (done.status_code, done.json()["outcome"]) == (200, "done")
    assert busy and all((a.status_code, a.json()["outcome"]) == (409, "busy") for a in busy[:-1])
    entry = ledger(db, order_id, "notify_warehouse")
    assert claimed is not None and entry is not None
    assert entry["state"] == "done" and entry["claimId"] == claimed["claimId"]
    assert entry["leaseUntil"] > claimed["leaseUntil"]  # renewed
    assert "takenOverFrom" not in entry
    assert warehouse.summary() == {"notifications": 1, "deliveries": 1, "duplicates": 0}


def test_a_delivery_whose_claim_was_taken_over_commits_nothing(
    db: firestore.Client,
    short_lease: WorkerConfig,
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "notify_warehouse", 0, "r")
    # This delivery's heartbeat stalls (a process frozen, or cut off from Firestore):
    # its claim runs out, and a redelivery takes it over while it still runs.
    monkeypatch.setattr(Ledger, "renew", lambda self, claim: True)
    # Its POST is held until the redelivery has taken over and finished.
    release = threading.Event()
    receive = warehouse.receive

    def hold_the_first(key: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        answer = receive(key, body)
        if warehouse.deliveries == 1:
            release.wait(timeout=60)
        return answer

    monkeypatch.setattr(warehouse, "receive", hold_the_first)
    with ServerThread(create_app(short_lease)) as server, ThreadPoolExecutor(1) as pool:
        worker = Sender(server.url, issuer)
        stalled = pool.submit(worker.deliver, payload)
        wait_for(lambda: warehouse.deliveries == 1, timeout_s=30)
        answers: list[requests.Response] = []

        def redeliver() -> bool:
            answers.append(worker.deliver(payload, retry_count=1))
            return answers[-1].status_code == 200

        wait_for(redeliver, timeout_s=30)
        release.set()
        overtaken = stalled.result(timeout=60)
    assert answers[-1].json()["outcome"] == "done"
    # Its commit was refused; the delivery that took over had done the action meanwhile.
    assert (overtaken.status_code, overtaken.json()["outcome"]) == (200, "already_done")
    entry = ledger(db, order_id, "notify_warehouse")
    assert entry is not None and entry["state"] == "done" and entry["retryCount"] == 1
    assert order(db, order_id)["actions"]["notify_warehouse"]["attempts"] == 2
    assert order(db, order_id)["actionsDone"] == 1
    assert len(list(db.collection(OUTBOX).stream())) == 1
    assert warehouse.summary() == {"notifications": 1, "deliveries": 2, "duplicates": 1}


def test_firestore_failing_mid_delivery_answers_503_and_leaves_no_partial_state(
    db: firestore.Client,
    project: str,
    issuer: LocalIssuer,
    warehouse: WarehouseReceiver,
    worker: Sender,
    firestore_emulator: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "notify_warehouse", 0, "r")
    proxy = StallingTcpProxy(firestore_emulator)
    config = worker_config(
        project, issuer.issuer_url, issuer.certs_url, warehouse.url, rpc_timeout_s=1.0
    )
    with monkeypatch.context() as patched:  # this worker reaches Firestore through the proxy
        patched.setenv("FIRESTORE_EMULATOR_HOST", proxy.address)
        app = create_app(config)
    warehouse.delay_s = 5.0  # time to cut Firestore off before the commit
    with ServerThread(app) as server, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(Sender(server.url, issuer).deliver, payload)
        wait_for(lambda: warehouse.deliveries == 1, timeout_s=30)  # claimed, now posting
        proxy.cut()  # Firestore goes away before the commit that records the action
        failed = answer.result(timeout=60)
    assert (failed.status_code, failed.json()["outcome"]) == (503, "retry")
    assert int(failed.headers["Retry-After"]) >= 1
    recorded = order(db, order_id)
    assert recorded["actions"]["notify_warehouse"]["state"] == "pending"
    assert "actionsDone" not in recorded and recorded["status"] == "pending"
    assert list(db.collection(OUTBOX).stream()) == []
    assert list(db.collection(DEAD_LETTERS).stream()) == []
    assert ledger(db, order_id, "notify_warehouse") is None  # no claim was written
    warehouse.delay_s = 0
    again = worker.deliver(payload, retry_count=1)  # so the retry need not wait for a lease
    assert (again.status_code, again.json()["outcome"]) == (200, "done")
    assert order(db, order_id)["actions"]["notify_warehouse"]["state"] == "done"
    assert warehouse.summary()["notifications"] == 1


@pytest.mark.parametrize("cancelled", ["before the stock is read", "after the stock is read"])
def test_an_order_cancelled_while_its_stock_is_taken_keeps_its_stock(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch, cancelled: str
) -> None:
    (order_id,) = seed_orders(db, 1, skus=1)
    before = stock(db)
    runs: list[str] = []

    def cancel() -> None:
        db.collection(ORDERS).document(order_id).update({"status": "cancelled"})

    def cancelled_meanwhile(ctx: ActionContext) -> None:
        runs.append(str(ctx.order.get("status")))  # as read before the action: pending
        first = len(runs) == 1
        if first and cancelled.startswith("before"):
            cancel()
        update_inventory(ctx)
        if first and cancelled.startswith("after"):
            cancel()  # after the action's read of the order: its commit is refused

    monkeypatch.setitem(REGISTRY, "update_inventory", cancelled_meanwhile)
    answer = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "failed")
    assert "is cancelled" in answer.json()["error"]
    # Seen on the action's own read of the order, at once or on the run after the refusal.
    assert len(runs) == (1 if cancelled.startswith("before") else 2)
    assert stock(db) == before
    recorded = order(db, order_id)
    assert recorded["status"] == "cancelled"
    assert recorded["actions"]["update_inventory"]["state"] == "failed"


def test_an_order_cancelled_while_its_failure_is_recorded_stays_cancelled(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    (order_id,) = seed_orders(db, 1, skus=1)
    db.collection(INVENTORY).document("sku-0").update({"stock": 0})

    def short_then_cancelled(ctx: ActionContext) -> None:
        try:
            update_inventory(ctx)  # too little stock: a permanent failure
        finally:  # cancelled after the action's read, before the failure is written
            db.collection(ORDERS).document(order_id).update({"status": "cancelled"})

    monkeypatch.setitem(REGISTRY, "update_inventory", short_then_cancelled)
    answer = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "failed")
    assert "insufficient stock" in answer.json()["error"]
    recorded = order(db, order_id)
    assert recorded["status"] == "cancelled"  # not overwritten with failed
    assert recorded["actions"]["update_inventory"]["state"] == "failed"


def test_another_action_recorded_meanwhile_does_not_refuse_the_stock_commit(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The three actions of an order run at once: the others record themselves on the
    # order while update_inventory runs. Only a change after its own read of the
    # order (with the stock) may refuse its commit.
    (order_id,) = seed_orders(db, 1, skus=1)
    before = stock(db)
    runs: list[str] = []

    def sibling_recorded_meanwhile(ctx: ActionContext) -> None:
        if not runs:
            sibling = {"actions.send_confirmation.state": "done", "actionsDone": 1}
            db.collection(ORDERS).document(order_id).update(sibling)
        runs.append("run")
        update_inventory(ctx)

    monkeypatch.setitem(REGISTRY, "update_inventory", sibling_recorded_meanwhile)
    answer = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "done")
    assert runs == ["run"]  # committed on the first run
    assert stock(db) < before
    recorded = order(db, order_id)
    assert recorded["actions"]["update_inventory"]["state"] == "done"
    assert recorded["actionsDone"] == 2 and recorded["status"] != "completed"


def test_a_claim_written_before_the_post_is_honoured_and_taken_over_when_stale(
    db: firestore.Client, worker: Sender
) -> None:
    # A claim of a worker that claims before posting (WORKER_CLAIM_BEFORE_POST, or one
    # deployed before a change of the setting): the order records nothing yet, so this
    # worker assumes no entry; its commit is refused, and it judges the entry it finds.
    (order_id,) = seed_orders(db, 1)
    entry_ref = db.collection(ORDERS).document(order_id).collection(LEDGER)
    held = entry_ref.document("notify_warehouse")
    now = datetime.datetime.now(datetime.UTC)
    lease = {"state": "claimed", "claimId": "a-live-delivery", "attempts": 1}
    held.set({**lease, "leaseUntil": now + datetime.timedelta(seconds=600)})
    payload = TaskPayload(order_id, "notify_warehouse", 0, "r")
    busy = worker.deliver(payload, retry_count=1)
    assert (busy.status_code, busy.json()["outcome"]) == (409, "busy")
    assert order(db, order_id)["actions"]["notify_warehouse"]["state"] == "pending"
    held.set({**lease, "leaseUntil": now - datetime.timedelta(seconds=1)})  # it crashed
    done = worker.deliver(payload, retry_count=2)
    assert (done.status_code, done.json()["outcome"]) == (200, "done")
    entry = ledger(db, order_id, "notify_warehouse")
    assert entry is not None and entry["state"] == "done"
    assert (entry["takenOverFrom"], entry["attempts"]) == ("a-live-delivery", 2)
    assert order(db, order_id)["actionsDone"] == 1


def test_a_busy_last_attempt_is_dead_lettered(db: firestore.Client, worker: Sender) -> None:
    (order_id,) = seed_orders(db, 1)
    held = db.collection(ORDERS).document(order_id).collection(LEDGER).document("update_inventory")
    lease_until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=600)
    held.set({"state": "claimed", "claimId": "a-dead-delivery", "leaseUntil": lease_until})
    payload = TaskPayload(order_id, "update_inventory", 0, "r")
    busy = worker.deliver(payload, retry_count=5)
    assert (busy.status_code, busy.json()["outcome"]) == (409, "busy")
    assert "holds the action" in busy.json()["error"]
    assert list(db.collection(DEAD_LETTERS).stream()) == []
    last = worker.deliver(payload, retry_count=99)
    assert (last.status_code, last.json()["outcome"]) == (503, "dead_lettered")
    (letter,) = [doc.to_dict() for doc in db.collection(DEAD_LETTERS).stream()]
    assert "holds the action" in letter["reason"] and letter["lastAttempt"] is True
    action = order(db, order_id)["actions"]["update_inventory"]
    assert action["state"] == "dead_lettered"


def test_an_unexpected_error_on_the_last_attempt_is_dead_lettered(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    (order_id,) = seed_orders(db, 1)

    def broken(ctx: ActionContext) -> None:
        raise KeyError("a bug")

    monkeypatch.setitem(REGISTRY, "send_confirmation", broken)
    payload = TaskPayload(order_id, "send_confirmation", 0, "r")
    crashed = worker.deliver(payload, retry_count=1)
    assert crashed.status_code == 500 and "a bug" not in crashed.text  # the log has it
    assert list(db.collection(DEAD_LETTERS).stream()) == []
    last = worker.deliver(payload, retry_count=99)
    assert (last.status_code, last.json()["outcome"]) == (503, "dead_lettered")
    (letter,) = [doc.to_dict() for doc in db.collection(DEAD_LETTERS).stream()]
    assert "KeyError" in letter["reason"] and letter["orderId"] == order_id
    assert order(db, order_id)["actions"]["send_confirmation"]["state"] == "dead_lettered"


def test_a_task_has_one_dead_letter_however_often_it_is_recorded(
    db: firestore.Client, worker: Sender
) -> None:
    headers = worker.headers(
        **{"X-CloudTasks-TaskName": "projects/p/locations/l/queues/q/tasks/t7"}
    )
    for _ in range(3):  # a write retried after a lost answer, or the task sent again
        assert worker.post(b"not json", headers).json()["outcome"] == "rejected"
    (letter,) = list(db.collection(DEAD_LETTERS).stream())
    assert letter.id == "t7" and "JSON" in letter.to_dict()["reason"]


def test_an_order_cancelled_before_its_last_message_is_recorded_is_not_completed(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    (order_id,) = seed_orders(db, 1)
    for action in ("update_inventory", "notify_warehouse"):
        assert worker.deliver(TaskPayload(order_id, action, 0, "r")).json()["outcome"] == "done"

    def cancelled_meanwhile(ctx: ActionContext) -> None:
        db.collection(ORDERS).document(order_id).update({"status": "cancelled"})
        send_confirmation(ctx)  # the order was read before: pending, two actions done

    monkeypatch.setitem(REGISTRY, "send_confirmation", cancelled_meanwhile)
    answer = worker.deliver(TaskPayload(order_id, "send_confirmation", 0, "r"))
    assert (answer.status_code, answer.json()["outcome"]) == (200, "done")  # the message left
    recorded = order(db, order_id)
    assert recorded["status"] == "cancelled" and recorded.get("completedAt") is None
    assert recorded["actions"]["send_confirmation"]["state"] == "done"
    assert recorded["actionsDone"] == len(ACTIONS)


def test_a_commit_whose_answer_was_lost_is_done_not_taken_over(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    (order_id,) = seed_orders(db, 1, skus=1)
    before = stock(db)
    original = Writes.commit
    resent: list[Any] = []

    def answer_lost(self: Writes, timeout_s: float | None = None) -> Any:
        response = original(self, timeout_s)
        final = len(self) == 3  # the stock, the ledger entry and the order
        if final and not resent:
            assert self.retry_safe  # every write of it carries a precondition
            resent.append(self)  # the answer was lost: the retry sends it again, refused
            return original(self, timeout_s)
        return response

    monkeypatch.setattr(Writes, "commit", answer_lost)
    answer = worker.deliver(TaskPayload(order_id, "update_inventory", 0, "r"))
    assert resent, "the final commit was not resent"
    assert (answer.status_code, answer.json()["outcome"]) == (200, "done")
    assert stock(db) == before - order(db, order_id)["items"][0]["quantity"]
    assert order(db, order_id)["actionsDone"] == 1


def test_a_dead_letter_never_overwrites_an_action_done_meanwhile(
    db: firestore.Client, worker: Sender, monkeypatch: pytest.MonkeyPatch
) -> None:
    (order_id,) = seed_orders(db, 1)
    payload = TaskPayload(order_id, "send_confirmation", 0, "r")
    order_ref = db.collection(ORDERS).document(order_id)
    held = order_ref.collection(LEDGER).document(payload.action)
    lease_until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=600)
    held.set({"state": "claimed", "claimId": "a-live-delivery", "leaseUntil": lease_until})
    original = Rejections.record_rejection

    def holder_commits_meanwhile(self: Rejections, *args: Any) -> None:
        original(self, *args)  # the dead letter document; then the live holder's commit lands
        order_ref.update({"actions.send_confirmation.state": "done"})

    monkeypatch.setattr(Rejections, "record_rejection", holder_commits_meanwhile)
    last = worker.deliver(payload, retry_count=99)
    assert (last.status_code, last.json()["outcome"]) == (503, "dead_lettered")
    assert order(db, order_id)["actions"]["send_confirmation"]["state"] == "done"
