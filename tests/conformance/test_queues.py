"""Conformance: queue methods through the official client (public API only)."""

from __future__ import annotations

import datetime

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.protobuf import field_mask_pb2

from tests.support.builders import http_task, later
from tests.support.conformance_cloud import Cloud
from tests.support.receiver import Receiver, wait_for


def test_defaults_crud_and_not_found(cloud: Cloud) -> None:
    queue = cloud.make_queue()
    assert queue.state == tasks_v2.Queue.State.RUNNING
    limits, retry = queue.rate_limits, queue.retry_config
    assert limits.max_dispatches_per_second == 500
    assert limits.max_concurrent_dispatches == 1000
    assert limits.max_burst_size == 100
    assert retry.max_attempts == 100
    assert retry.min_backoff == datetime.timedelta(seconds=0.1)
    assert retry.max_backoff == datetime.timedelta(seconds=3600)
    assert retry.max_doublings == 16
    assert retry.max_retry_duration == datetime.timedelta(0)
    assert cloud.client.get_queue(name=queue.name) == queue
    with pytest.raises(exceptions.AlreadyExists):
        cloud.client.create_queue(parent=cloud.location, queue={"name": queue.name})
    cloud.client.delete_queue(name=queue.name)
    with pytest.raises(exceptions.NotFound):
        cloud.client.get_queue(name=queue.name)


def test_list_queues_pages(cloud: Cloud) -> None:
    names = {cloud.make_queue().name for _ in range(3)}
    pager = cloud.client.list_queues(request={"parent": cloud.location, "page_size": 2})
    pages = list(pager.pages)
    assert all(len(page.queues) <= 2 for page in pages)
    listed = [q.name for page in pages for q in page.queues]
    assert len(listed) == len(set(listed))
    assert names <= set(listed)
    paused = cloud.client.pause_queue(name=sorted(names)[0]).name
    only_paused = cloud.client.list_queues(
        request={"parent": cloud.location, "filter": "state: PAUSED"}
    )
    assert paused in [q.name for q in only_paused]
    assert not names - {paused} & {q.name for q in only_paused}


def test_update_queue_changes_only_the_masked_fields(cloud: Cloud) -> None:
    queue = cloud.make_queue(max_dispatches_per_second=10, max_attempts=5)
    update = tasks_v2.Queue(
        name=queue.name,
        rate_limits={"max_dispatches_per_second": 20, "max_concurrent_dispatches": 7},
        retry_config={"max_attempts": 9, "max_doublings": 3},
    )
    mask = field_mask_pb2.FieldMask(
        paths=["rate_limits.max_dispatches_per_second", "retry_config.max_doublings"]
    )
    updated = cloud.client.update_queue(queue=update, update_mask=mask)
    assert updated.rate_limits.max_dispatches_per_second == 20
    assert updated.rate_limits.max_concurrent_dispatches == 1000  # not in the mask
    assert updated.retry_config.max_attempts == 5  # not in the mask
    assert updated.retry_config.max_doublings == 3
    assert cloud.client.get_queue(name=queue.name) == updated
    bad = field_mask_pb2.FieldMask(paths=["no_such_field"])
    with pytest.raises(exceptions.InvalidArgument):
        cloud.client.update_queue(queue=update, update_mask=bad)


def test_pause_holds_dispatch_until_resume(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    running = cloud.make_queue()
    paused = cloud.client.pause_queue(name=queue.name)
    assert paused.state == tasks_v2.Queue.State.PAUSED
    cloud.client.create_task(parent=queue.name, task=http_task("", target.url("/paused")))
    # The same task in a running queue, created after, arrives: the paused one would have.
    cloud.client.create_task(parent=running.name, task=http_task("", target.url("/running")))
    target.wait_at("/running", 1, cloud.wait_s)
    assert target.at("/paused") == []
    resumed = cloud.client.resume_queue(name=queue.name)
    assert resumed.state == tasks_v2.Queue.State.RUNNING
    wait_for(lambda: len(target.at("/paused")) == 1, cloud.wait_s)


def test_purge_deletes_every_task(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    for i in range(3):
        cloud.client.create_task(
            parent=queue.name,
            task=http_task(f"{queue.name}/tasks/p{i}", target.url("/p"), schedule_time=later(600)),
        )
    purged = cloud.client.purge_queue(name=queue.name)
    assert purged.purge_time.timestamp() > 0
    wait_for(lambda: list(cloud.client.list_tasks(parent=queue.name)) == [], cloud.wait_s)
    with pytest.raises(exceptions.NotFound):
        cloud.client.get_task(name=f"{queue.name}/tasks/p0")


def test_queue_stats_with_read_mask(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue()
    cloud.client.pause_queue(name=queue.name)
    first = later(300)
    cloud.client.create_task(
        parent=queue.name, task=http_task("", target.url("/s"), schedule_time=first)
    )
    cloud.client.create_task(
        parent=queue.name, task=http_task("", target.url("/s"), schedule_time=later(600))
    )
    plain = cloud.beta.get_queue(name=queue.name)
    assert not plain.stats.tasks_count
    masked = cloud.beta.get_queue(request={"name": queue.name, "read_mask": {"paths": ["stats"]}})
    assert masked.stats.tasks_count == 2
    oldest = masked.stats.oldest_estimated_arrival_time.timestamp()
    assert oldest == pytest.approx(first.seconds + first.nanos / 1e9, abs=1.0)
    assert masked.stats.concurrent_dispatches_count == 0
    listed = cloud.beta.list_queues(
        request={"parent": cloud.location, "read_mask": {"paths": ["name", "stats"]}}
    )
    (mine,) = [q for q in listed if q.name == queue.name]
    assert mine.stats.tasks_count == 2 and not mine.rate_limits.max_dispatches_per_second
