"""The emulator's task store adds a batch in one transaction, task by task in outcome.

Also the shortcuts a fan-out's creations take: a record's JSON and a task's
protobuf made once for tasks that share them must still be each task's own.
"""

from __future__ import annotations

from typing import Any

from google.cloud import tasks_v2

from localcloud.tasks.errors import QueueNotFoundError, TaskAlreadyExistsError
from localcloud.tasks.model import (
    AttemptRecord,
    QueueConfig,
    TaskRecord,
    task_from_row,
    task_to_json,
)
from localcloud.tasks.retry import RetryPolicy
from localcloud.tasks.sqlite_task_store import MEMORY, SqliteTaskStore
from localcloud.tasks.task_conversion import VIEW_BASIC, VIEW_FULL, task_to_pb
from tests.support.builders import make_task

QUEUE = "projects/p/locations/l/queues/q"
_Task = tasks_v2.Task.pb()


def _queue(name: str = QUEUE) -> QueueConfig:
    return QueueConfig(
        name=name,
        max_dispatches_per_second=1.0,
        max_burst_size=1,
        max_concurrent_dispatches=1,
        retry=RetryPolicy(),
    )


def _task(task_id: str, queue: str = QUEUE, **fields: Any) -> TaskRecord:
    values: dict[str, Any] = {"dispatch_count": 0, "schedule_time_s": 4e9, **fields}
    return make_task(name=f"{queue}/tasks/{task_id}", **values)


def test_a_batch_refuses_live_reserved_repeated_and_queueless_names_one_by_one() -> None:
    store = SqliteTaskStore(MEMORY)
    store.create_queue(_queue())
    store.add_task(_task("live"))
    store.add_task(_task("gone"))
    store.delete_task(f"{QUEUE}/tasks/gone")
    fresh = [_task(f"n{i:03d}") for i in range(596)]
    batch = [
        _task("gone"),
        *fresh,
        _task("x", queue="projects/p/locations/l/queues/nope"),
        _task("n000"),
        _task("live"),  # past the first 500 names, which are looked up together
    ]

    results = store.add_tasks(batch)

    assert results[1:597] == fresh
    gone, missing, repeated, live = results[0], results[597], results[598], results[599]
    assert isinstance(gone, TaskAlreadyExistsError) and "stays reserved" in str(gone)
    assert isinstance(missing, QueueNotFoundError)
    assert isinstance(repeated, TaskAlreadyExistsError) and "n000 already exists." in str(repeated)
    assert isinstance(live, TaskAlreadyExistsError) and str(live).endswith("live already exists.")
    counters = store.counters()
    assert (counters["tasks_created"], counters["deduplicated"], counters["queued"]) == (
        2 + 596,
        3,
        1 + 596,
    )
    listed, _ = store.list_tasks(QUEUE, "", 1000)
    assert [t.name for t in listed] == sorted([f"{QUEUE}/tasks/live", *(t.name for t in fresh)])
    assert store.get_task(fresh[5].name) == fresh[5]


def test_a_record_round_trips_through_json_when_it_shares_all_but_its_headers() -> None:
    policy = RetryPolicy(max_attempts=3, min_backoff_s=0.5)
    plain = _task("a", retry=policy, headers={"Content-Type": "application/json"})
    traced = _task("b", retry=policy, headers={"Content-Type": "application/json", "t": "1"})
    attempted = _task(
        "c",
        retry=policy,
        headers={"Content-Type": "application/json"},
        dispatch_count=2,
        first_attempt=AttemptRecord(schedule_time_s=1.5, dispatch_time_s=2.5),
        last_attempt=AttemptRecord(3.5, 4.5, 5.5, 14, "unavailable"),
    )
    for task in (plain, traced, attempted, plain, traced):
        again = task_from_row(
            task.name, task.body, task.schedule_time_s, task.leased, task_to_json(task)
        )
        assert again == task


def test_tasks_sharing_their_request_still_come_out_as_themselves() -> None:
    common = {"headers": {"Content-Type": "application/json"}, "body": b'{"n": 1}'}
    first = _task("a", oidc_email="sa@p.iam.gserviceaccount.com", oidc_audience="aud", **common)
    second = _task("b", dispatch_count=3, response_count=2, **common)
    second.headers = {"Content-Type": "application/json", "traceparent": "00-1-2-01"}

    basic = task_to_pb(first, VIEW_BASIC, _Task)
    full = task_to_pb(first, VIEW_FULL, _Task)
    other = task_to_pb(second, 0, _Task)

    assert basic.name.endswith("/tasks/a") and basic.view == VIEW_BASIC
    assert basic.http_request.body == b"" and full.http_request.body == b'{"n": 1}'
    assert full.view == VIEW_FULL and basic.http_request.oidc_token.audience == "aud"
    assert dict(basic.http_request.headers) == {"Content-Type": "application/json"}
    assert other.name.endswith("/tasks/b") and other.view == VIEW_BASIC
    assert (other.dispatch_count, other.response_count) == (3, 2)
    assert not other.http_request.HasField("oidc_token")
    assert dict(other.http_request.headers)["traceparent"] == "00-1-2-01"
    assert task_to_pb(first, VIEW_BASIC, _Task) == basic  # the shared part was not changed
