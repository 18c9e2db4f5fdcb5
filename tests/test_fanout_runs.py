"""Fan-out runs against the Firestore emulator and the Cloud Tasks emulator, over real HTTP:
the time budget and its continuation, single flight, run records and per-order failures.
"""

from __future__ import annotations

import threading

import requests
from google.cloud import firestore

from fanout.app import build_runner
from fanout.config import FanoutConfig
from fanout.lease import RunLease
from fanout.records import RunRecords
from fanout.selection import Selection
from fanout.summary import RunSummary
from localcloud.tasks.server import TasksEmulator
from orders.schema import FANOUT_RUNS, ORDERS
from tests.support.clock import FakeClock
from tests.support.fanout_setup import make_cloud, scheduler_headers, served_fanout
from tests.support.receiver import Receiver, wait_for
from tests.support.seeding import seed_orders


def statuses(db: firestore.Client) -> dict[str, str]:
    return {doc.id: doc.get("status") for doc in db.collection(ORDERS).stream()}


def test_a_run_out_of_time_continues_through_its_continuation_until_every_order_is_queued(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator, receiver: Receiver
) -> None:
    order_ids = seed_orders(db, 50)
    cloud = make_cloud(project, tasks_emulator, receiver.url(""))
    # A budget so small that every segment does exactly one page, then hands over.
    # INFO, so every log line of the run is written (a bad log call fails the run).
    config = FanoutConfig(cloud=cloud, page_size=10, time_budget_s=0.001, log_level="INFO")
    with served_fanout(config, tasks_emulator) as fanout:
        headers = scheduler_headers(tasks_emulator, fanout.url)
        answer = requests.post(f"{fanout.url}/fanout", headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        first = answer.json()
        assert first["state"] == "continuing" and first["orders"] == 10
        assert first["continuation"].endswith(f"/tasks/fanout-{first['run_id']}-s1")
        runs = db.collection(FANOUT_RUNS)
        wait_for(lambda: runs.document(first["run_id"]).get().get("state") == "finished", 60)
    record = runs.document(first["run_id"]).get().to_dict()
    assert record["segment"] == 4  # segments 0..4 took a page each; 4 found the end
    assert record["totals"] == {
        "orders": 50,
        "queued": 50,
        "tasks_created": 150,
        "deduplicated": 0,
        "failed": 0,
        "pages": 5,
    }
    orders = {doc.id: doc.to_dict() for doc in db.collection(ORDERS).stream()}
    assert set(orders) == set(order_ids)
    assert all(o["status"] == "queued" for o in orders.values())
    assert {o["fanout"]["runId"] for o in orders.values()} == {first["run_id"]}
    wait_for(lambda: len(receiver.at("/tasks")) >= 150, timeout_s=60)
    names = [r.headers["x-cloudtasks-taskname"] for r in receiver.at("/tasks")]
    assert len(names) == len(set(names)) == 150
    assert not db.collection("fanout_leases").document("orders").get().exists


def test_a_redelivered_continuation_changes_nothing_and_a_live_lease_answers_503(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 20)
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    config = FanoutConfig(cloud=cloud, page_size=10, log_level="WARNING")
    with served_fanout(config, tasks_emulator) as fanout:
        headers = scheduler_headers(tasks_emulator, fanout.url)
        done = requests.post(f"{fanout.url}/fanout", headers=headers, timeout=60).json()
        assert done["state"] == "finished" and done["orders"] == 20
        token = tasks_emulator.issuer.mint(fanout.url, cloud.invoker_email)
        headers = {"Authorization": f"Bearer {token}"}
        again = requests.post(
            f"{fanout.url}/fanout/continue",
            json={"runId": done["run_id"], "segment": 1},
            headers=headers,
            timeout=30,
        )
        assert again.status_code == 200 and again.json()["state"] == "finished"
        assert again.json()["orders"] == 0
        # A run that stopped at segment 0 and whose lease another run holds: retry later.
        stopped = RunSummary(run_id="20260101T000000Z-stopped", trigger="test", segment=0)
        RunRecords(db).create(stopped.run_id, "test", Selection())
        other = RunLease(db, "someone-else", duration_s=60)
        other.acquire(0)
        busy = requests.post(
            f"{fanout.url}/fanout/continue",
            json={"runId": stopped.run_id, "segment": 1},
            headers=headers,
            timeout=30,
        )
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        assert "someone-else" in busy.json()["message"]
        missing = requests.post(
            f"{fanout.url}/fanout/continue",
            json={"runId": "no-such-run", "segment": 1},
            headers=headers,
            timeout=30,
        )
        # Continuations that can never work are acknowledged, or the queue would retry them.
        assert missing.status_code == 200 and missing.json()["outcome"] == "rejected"
        assert "no run 'no-such-run'" in missing.json()["error"]
        for body in ({"runId": 7}, {"runId": "a/b", "segment": 1}, {"runId": "r", "segment": 0}):
            bad = requests.post(
                f"{fanout.url}/fanout/continue", json=body, headers=headers, timeout=30
            )
            assert bad.status_code == 200 and bad.json()["outcome"] == "rejected", body


def test_a_second_run_while_one_holds_the_lease_is_skipped_until_the_lease_expires(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 15)
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    clock = FakeClock()
    runner = build_runner(FanoutConfig(cloud=cloud, log_level="WARNING"), clock=clock.utc)
    crashed = RunLease(db, "crashed-run", duration_s=60, clock=clock.utc)
    crashed.acquire(0)  # and never renews nor releases: it crashed
    skipped = runner.run("test")
    assert skipped.state == "skipped" and skipped.orders == 0
    assert "crashed-run" in skipped.message
    assert set(statuses(db).values()) == {"pending"}
    assert db.collection(FANOUT_RUNS).document(skipped.run_id).get().get("state") == "skipped"
    clock.advance(59)
    still_held = runner.run("test")
    assert still_held.state == "skipped" and "crashed-run" in still_held.message
    clock.advance(2)
    taken_over = runner.run("test")
    assert (taken_over.state, taken_over.orders, taken_over.tasks_created) == ("finished", 15, 45)


def test_simultaneous_runs_never_page_the_same_orders(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 60)
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    runner = build_runner(FanoutConfig(cloud=cloud, page_size=10, log_level="WARNING"))
    results: list[RunSummary] = []
    start = threading.Barrier(4)

    def run() -> None:
        start.wait()
        results.append(runner.run("test"))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    assert sum(r.orders for r in results) == 60
    assert sum(r.tasks_created for r in results) == 180
    assert sum(r.deduplicated for r in results) == 0
    assert set(statuses(db).values()) == {"queued"}


def test_orders_that_cannot_form_a_task_fail_alone_and_stay_pending(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 10)
    orders = db.collection(ORDERS)
    orders.document("order-00003").update({"fanout": {"generation": "seven"}})
    long_id = "o" * 1200  # its task id falls back to the hashed long form: bigger tasks
    orders.document(long_id).set(orders.document("order-00001").get().to_dict() or {})
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    config = FanoutConfig(cloud=cloud, max_task_bytes=700, log_level="WARNING")
    summary = build_runner(config).run("test")
    assert summary.orders == 11 and summary.queued == 9
    reasons = {f["orderId"]: f["reason"] for f in summary.failures}
    assert set(reasons) == {"order-00003", long_id}
    assert "fanout.generation is 'seven'" in reasons["order-00003"]
    assert "over the queue's limit of 700 bytes" in reasons[long_id]
    assert summary.failed == 1 + 3  # one order that formed no task, three oversize tasks
    after = statuses(db)
    assert after["order-00003"] == after[long_id] == "pending"
    assert sum(1 for s in after.values() if s == "queued") == 9
    record = db.collection(FANOUT_RUNS).document(summary.run_id).get().to_dict() or {}
    assert {f["orderId"] for f in record["failures"]} == set(reasons)
