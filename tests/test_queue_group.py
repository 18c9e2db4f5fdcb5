"""Queue groups: naming, the stable queue per task, the size in force across a resize,
creation into every queue at once, and the worker accepting the group's queues only.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from google.cloud import firestore, tasks_v2

from fanout.app import build_runner
from fanout.config import FanoutConfig
from fanout.enqueue import Created, Enqueuer
from fanout.queue_group import QUEUE_GROUPS, recorded_queue_count
from fanout.status import status_report
from localcloud.tasks.server import TasksEmulator
from orders.clients import tasks_client
from orders.contract import TaskPayload, build_task, task_id
from orders.errors import SettingsError
from orders.queue_group import accepted_queue_ids, queue_for_task, queue_ids, queue_index
from orders.schema import ACTIONS, ORDERS
from orders.settings import CloudSettings
from tests.support.seeding import seed_orders
from worker.config import WorkerConfig
from worker.delivery import Delivery
from worker.errors import ForeignQueueError

PROJECT_QUEUES = 4  # the largest group the tests use; its queues are created up front


def test_a_group_of_one_is_the_queue_itself_and_larger_groups_number_their_queues() -> None:
    assert queue_ids("q", 1) == ("q",)
    assert queue_ids("q", 3) == ("q-00", "q-01", "q-02")
    with pytest.raises(ValueError, match="1 to 100"):
        queue_ids("q", 0)
    with pytest.raises(ValueError, match="1 to 100"):
        queue_ids("q", 101)


def test_every_task_has_one_queue_and_the_group_is_used_evenly() -> None:
    ids = [task_id(f"order-{i}", "send_confirmation", 0) for i in range(4000)]
    assert [queue_for_task("q", 8, i) for i in ids] == [queue_for_task("q", 8, i) for i in ids]
    spread = Counter(queue_index(i, 8) for i in ids)
    assert set(spread) == set(range(8))
    assert min(spread.values()) > 400  # 500 each on average
    assert {queue_for_task("q", 1, i) for i in ids} == {"q"}


def test_the_group_size_comes_from_tasks_queue_count() -> None:
    cloud = CloudSettings.from_env({"TASKS_QUEUE": "acts", "TASKS_QUEUE_COUNT": "3"})
    assert cloud.queue_ids == ("acts-00", "acts-01", "acts-02")
    assert CloudSettings.from_env({}).queue_ids == ("order-actions",)
    with pytest.raises(SettingsError, match="TASKS_QUEUE_COUNT=101"):
        CloudSettings.from_env({"TASKS_QUEUE_COUNT": "101"})
    with pytest.raises(SettingsError, match="TASKS_QUEUE_COUNT"):
        CloudSettings.from_env({"TASKS_QUEUE_COUNT": "0"})
    task = build_task(cloud, TaskPayload("o-1", "send_confirmation", 0, "run"))
    queue = queue_for_task("acts", 3, task_id("o-1", "send_confirmation", 0))
    assert task.name.startswith(
        f"projects/order-fanout-local/locations/us-central1/queues/{queue}/"
    )


def test_the_worker_accepts_deliveries_from_any_queue_of_the_group_and_no_other() -> None:
    config = WorkerConfig.from_env({"TASKS_QUEUE": "acts", "TASKS_QUEUE_COUNT": "4"})
    assert config.accepted_queues == accepted_queue_ids("acts", 4)
    headers = {"X-CloudTasks-TaskName": "t"}
    for queue in ("acts-00", "acts-03", "acts"):  # "acts": the single queue a group grew from
        delivery = Delivery.from_headers(
            {**headers, "X-CloudTasks-QueueName": queue}, config.accepted_queues
        )
        assert delivery.queue_name == queue
    for queue in ("acts-04", "acts-0", "other", "other-00", "acts-00-x"):
        with pytest.raises(ForeignQueueError, match=repr(queue)):
            Delivery.from_headers(
                {**headers, "X-CloudTasks-QueueName": queue}, config.accepted_queues
            )


def test_the_size_recorded_on_an_order_wins_for_its_generation() -> None:
    assert recorded_queue_count({}, False) is None  # never fanned out
    assert recorded_queue_count({"fanout": {"runId": "r", "queues": 4}}, False) == 4
    assert recorded_queue_count({"fanout": {"runId": "r", "queues": 4}}, True) is None
    assert recorded_queue_count({"fanout": {"runId": "r"}}, False) == 1  # before groups
    with pytest.raises(ValueError, match=r"fanout\.queues"):
        recorded_queue_count({"fanout": {"runId": "r", "queues": "4"}}, False)


def group_cloud(project: str, emulator: TasksEmulator, count: int) -> CloudSettings:
    """Settings for a group of ``count``, with every queue of a group of 4 created, paused."""
    cloud = CloudSettings(
        project=project,
        worker_url="http://127.0.0.1:9",
        tasks_emulator_host=emulator.address,
        queue_count=count,
    )
    client = tasks_client(cloud)
    for queue in queue_ids(cloud.queue, PROJECT_QUEUES):
        path = cloud.queue_path_of(queue)
        try:
            client.create_queue(
                parent=f"projects/{project}/locations/{cloud.location}",
                queue=tasks_v2.Queue(name=path),
            )
        except Exception:  # created by an earlier call of this test
            continue
        client.pause_queue(name=path)  # tasks stay put, to be counted
    return cloud


def tasks_by_queue(cloud: CloudSettings) -> dict[str, list[str]]:
    client = tasks_client(cloud)
    return {
        queue: [
            t.name.rsplit("/", 1)[1] for t in client.list_tasks(parent=cloud.queue_path_of(queue))
        ]
        for queue in queue_ids(cloud.queue, PROJECT_QUEUES)
    }


def test_creation_goes_to_every_queue_of_the_group_in_one_submit(
    project: str, tasks_emulator: TasksEmulator
) -> None:
    cloud = group_cloud(project, tasks_emulator, 4)
    tasks = [
        build_task(cloud, TaskPayload(f"o-{i}", action, 0, "run"))
        for i in range(200)
        for action in ACTIONS
    ]
    enqueuer = Enqueuer(tasks_client(cloud), cloud.queue_path, 4, 10.0)
    results = enqueuer.enqueue(tasks)
    enqueuer.close()
    assert Counter(r.outcome for r in results) == {Created.CREATED: 600}
    found = tasks_by_queue(cloud)
    for queue, names in found.items():
        expected = [t.name.rsplit("/", 1)[1] for t in tasks if f"/queues/{queue}/" in t.name]
        assert sorted(names) == sorted(expected) and names, queue


def test_a_resize_in_the_middle_of_a_backlog_creates_no_second_task(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 30)
    config = FanoutConfig(
        cloud=group_cloud(project, tasks_emulator, 2), page_size=10, time_budget_s=0
    )
    first = build_runner(config).run("scheduler")
    assert (first.state, first.tasks_created) == ("finished", 90)
    orders = db.collection(ORDERS)
    assert {doc.get("fanout.queues") for doc in orders.stream()} == {2}
    # A run that stopped before marking: orders 10..19 have their tasks, no record.
    for i in range(10, 20):
        orders.document(f"order-{i:05d}").update(
            {"status": "pending", "fanout": firestore.DELETE_FIELD}
        )
    seed_orders(db, 10, prefix="later")  # and orders no run has seen yet

    resized = dataclasses.replace(config, cloud=dataclasses.replace(config.cloud, queue_count=4))
    runner = build_runner(resized)
    second = runner.run("scheduler")
    # The unmarked orders went to the group in force (2 queues): deduplicated, not doubled.
    assert (second.state, second.deduplicated, second.tasks_created) == ("finished", 30, 30)
    assert "now has 4 queues" in second.message
    assert db.collection(QUEUE_GROUPS).document("order-actions").get().get("size") == 4

    seed_orders(db, 20, prefix="newest")
    third = runner.run("scheduler")
    assert (third.tasks_created, third.deduplicated) == (60, 0)
    found = tasks_by_queue(config.cloud)
    names = [name for queue in found.values() for name in queue]
    assert len(names) == len(set(names)) == 60 * 3  # one task per (order, action, generation)
    assert all(found.values())  # the resized group's new queues took tasks
    newest = {doc.get("fanout.queues") for doc in orders.stream() if doc.id.startswith("newest")}
    assert newest == {4}
    report = status_report(db, None, resized.cloud)
    assert "queue group order-actions: 4 queues configured" in report
    assert "order-actions-03" in report


def test_a_resize_waits_while_a_run_leaves_failures(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 5)
    config = FanoutConfig(cloud=group_cloud(project, tasks_emulator, 2), time_budget_s=0)
    assert build_runner(config).run("scheduler").state == "finished"
    db.collection(ORDERS).document("broken").set(
        {"status": "pending", "createdAt": 1, "fanout": {"generation": "x"}}
    )
    resized = dataclasses.replace(config, cloud=dataclasses.replace(config.cloud, queue_count=4))
    summary = build_runner(resized).run("scheduler")
    assert summary.failed == 1
    assert db.collection(QUEUE_GROUPS).document("order-actions").get().get("size") == 2
