"""Fanout against the official Firestore emulator and the in-process Cloud Tasks emulator."""

from __future__ import annotations

import datetime

import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from fanout.app import build_runner
from fanout.config import FanoutConfig
from fanout.marking import mark_queued
from fanout.planning import PLANNED_FIELDS, planned_fields
from localcloud.tasks.server import TasksEmulator
from orders.schema import INVENTORY, ORDERS, OUTBOX
from tests.support.fanout_setup import make_cloud, scheduler_headers, served_fanout
from tests.support.receiver import Receiver, wait_for
from tests.support.seeding import seed_orders
from tests.support.worker_setup import queue_worker


def test_fanning_out_the_same_orders_twice_creates_each_task_once(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator, receiver: Receiver
) -> None:
    order_ids = seed_orders(db, 120)
    cloud = make_cloud(project, tasks_emulator, receiver.url(""))
    runner = build_runner(FanoutConfig(cloud=cloud, page_size=50, batches_in_flight=4))
    first = runner.run("test")
    assert (first.orders, first.tasks_created, first.deduplicated, first.failed) == (
        120,
        360,
        0,
        0,
    )
    assert first.pages == 3
    statuses = {doc.get("status") for doc in db.collection(ORDERS).stream()}
    assert statuses == {"queued"}
    # A crash before the orders were marked would leave them pending: run again.
    batch = db.batch()
    for order_id in order_ids:
        batch.update(db.collection(ORDERS).document(order_id), {"status": "pending"})
    batch.commit()
    second = runner.run("test")
    assert (second.orders, second.tasks_created, second.deduplicated) == (120, 0, 360)
    wait_for(lambda: tasks_emulator.stats()["succeeded"] >= 360, timeout_s=60)
    stats = tasks_emulator.stats()
    assert (stats["queued"], stats["in_flight"]) == (0, 0)  # nothing left to arrive later
    assert stats["succeeded"] == 360
    names = [r.headers["x-cloudtasks-taskname"] for r in receiver.at("/tasks")]
    assert len(names) == 360 and len(set(names)) == 360


def test_a_run_with_nothing_pending_reports_zero(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    summary = build_runner(FanoutConfig(cloud=cloud)).run("test")
    assert (summary.orders, summary.tasks_created, summary.pages) == (0, 0, 0)
    run = db.collection("fanout_runs").document(summary.run_id).get().to_dict()
    assert run["state"] == "finished" and run["totals"]["orders"] == 0


def test_orders_complete_end_to_end_over_real_http(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    order_ids = seed_orders(db, 90, skus=3)
    taken: dict[str, int] = {}
    for doc in db.collection(ORDERS).stream():
        for item in doc.get("items"):
            taken[item["sku"]] = taken.get(item["sku"], 0) + item["quantity"]
    with queue_worker(project, tasks_emulator) as worker:
        cloud = make_cloud(project, tasks_emulator, worker.url)
        config = FanoutConfig(cloud=cloud, page_size=40, log_level="WARNING")
        with served_fanout(config, tasks_emulator) as fanout:
            headers = scheduler_headers(tasks_emulator, fanout.url)
            answer = requests.post(f"{fanout.url}/fanout", headers=headers, timeout=60)
            assert answer.status_code == 200
            summary = answer.json()
            assert (summary["orders"], summary["tasks_created"], summary["trigger"]) == (
                90,
                270,
                "scheduler",
            )
            completed = db.collection(ORDERS).where(filter=FieldFilter("status", "==", "completed"))
            wait_for(lambda: completed.count().get()[0][0].value == 90, timeout_s=60)
    orders = {doc.id: doc.to_dict() for doc in db.collection(ORDERS).stream()}
    assert set(orders) == set(order_ids)
    assert all(o["status"] == "completed" for o in orders.values())
    assert all(o["fanout"]["runId"] == summary["run_id"] for o in orders.values())
    assert len(list(db.collection(OUTBOX).stream())) == 180
    for sku, quantity in taken.items():
        assert db.collection(INVENTORY).document(sku).get().get("stock") == 1_000_000 - quantity
    assert tasks_emulator.stats()["succeeded"] == 270


def test_marking_never_undoes_a_finished_order_and_keeps_the_generation(
    db: firestore.Client,
) -> None:
    first, second, third = seed_orders(db, 3)
    orders = db.collection(ORDERS)
    orders.document(third).update({"fanout": {"generation": 2}})
    snapshots = [orders.document(i).get() for i in (first, second, third)]
    # The worker finishes the second order after the page was read, before it is marked.
    orders.document(second).update({"status": "completed"})
    assert mark_queued(db, snapshots, {"runId": "run-7"}) == []
    marked = {i: orders.document(i).get().to_dict() for i in (first, second, third)}
    assert marked[first]["status"] == "queued" and marked[first]["fanout"] == {"runId": "run-7"}
    assert marked[second]["status"] == "completed" and marked[second]["fanout"]["runId"] == "run-7"
    assert marked[third]["fanout"] == {"generation": 2, "runId": "run-7"}


def test_marking_with_the_generation_and_group_known_writes_the_whole_record(
    db: firestore.Client,
) -> None:
    first, second = seed_orders(db, 2)
    orders = db.collection(ORDERS)
    old = {"runId": "old", "generation": 1, "queues": 4, "stray": True}  # stray: no writer has it
    orders.document(second).update({"fanout": old})
    snapshots = [orders.document(i).get() for i in (first, second)]
    fields = {"runId": "run-8", "queuedAt": firestore.SERVER_TIMESTAMP}
    generations, groups = {first: 0, second: 2}, {first: 1, second: 4}
    assert mark_queued(db, snapshots, fields, generations=generations, queue_counts=groups) == []
    for order_id in (first, second):
        record = orders.document(order_id).get().to_dict() or {}
        assert record["status"] == "queued"
        queued_at = record["fanout"].pop("queuedAt")  # the server's time of the write
        assert isinstance(queued_at, datetime.datetime)
        assert record["fanout"] == {
            "runId": "run-8",
            "generation": generations[order_id],
            "queues": groups[order_id],
        }  # written whole: the stray field is gone


def test_marking_without_the_generation_keeps_the_rest_of_the_record(
    db: firestore.Client,
) -> None:
    (order_id,) = seed_orders(db, 1)
    ref = db.collection(ORDERS).document(order_id)
    ref.update({"fanout": {"runId": "old", "generation": 3, "queues": 2}})
    assert mark_queued(db, [ref.get()], {"runId": "run-9"}) == []
    assert (ref.get().to_dict() or {})["fanout"] == {"runId": "run-9", "generation": 3, "queues": 2}


def test_planning_reads_the_fields_it_needs_as_the_whole_order_has_them(
    db: firestore.Client,
) -> None:
    (order_id,) = seed_orders(db, 1)
    ref = db.collection(ORDERS).document(order_id)
    pending = ref.get()
    ref.update({"fanout": {"runId": "r1", "generation": 2, "queuedAt": firestore.SERVER_TIMESTAMP}})
    fanned_out = ref.get()

    for snapshot in (pending, fanned_out):
        whole = snapshot.to_dict() or {}
        expected = {name: whole[name] for name in PLANNED_FIELDS if name in whole}
        assert planned_fields(snapshot) == expected
    assert "fanout" not in planned_fields(pending)
    assert planned_fields(fanned_out)["fanout"]["generation"] == 2
    assert planned_fields(db.collection(ORDERS).document("no-such-order").get()) == {}
