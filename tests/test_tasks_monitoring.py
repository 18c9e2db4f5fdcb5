"""The emulator's Cloud Monitoring: task attempt counts read through the official client."""

from __future__ import annotations

import time

import pytest
from google.api import metric_pb2
from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3, tasks_v2
from google.protobuf import duration_pb2, timestamp_pb2

from console.attempt_rates import AttemptMonitor, is_success
from localcloud.tasks.attempt_counts import AttemptCounts, SeriesKey
from localcloud.tasks.server import TasksEmulator
from orders.clients import monitoring_client, tasks_client
from orders.settings import CloudSettings
from tests.support.ports import refused_port
from tests.support.receiver import Receiver, wait_for

PROJECT = "metrics-test"
METRIC = "cloudtasks.googleapis.com/queue/task_attempt_count"
Aligner = monitoring_v3.Aggregation.Aligner


def _interval(start_s: float, end_s: float) -> monitoring_v3.TimeInterval:
    return monitoring_v3.TimeInterval(
        start_time=timestamp_pb2.Timestamp(seconds=int(start_s)),
        end_time=timestamp_pb2.Timestamp(seconds=int(end_s)),
    )


def _request(**fields: object) -> monitoring_v3.ListTimeSeriesRequest:
    now = time.time()
    defaults: dict[str, object] = {
        "name": f"projects/{PROJECT}",
        "filter": f'metric.type = "{METRIC}" AND resource.type = "cloud_tasks_queue"',
        "interval": _interval(now - 600, now + 1),
    }
    return monitoring_v3.ListTimeSeriesRequest(**{**defaults, **fields})


def _by_code(series: list[monitoring_v3.TimeSeries]) -> dict[tuple[str, str], int]:
    return {
        (s.resource.labels["queue_id"], s.metric.labels["response_code"]): sum(
            p.value.int64_value for p in s.points
        )
        for s in series
    }


@pytest.fixture
def cloud(tasks_emulator: TasksEmulator, receiver: Receiver) -> CloudSettings:
    """Two queues in the emulator: order-actions and other, each retrying fast."""
    cloud = CloudSettings(
        project=PROJECT, worker_url=receiver.url(""), tasks_emulator_host=tasks_emulator.address
    )
    client = tasks_client(cloud)
    for queue_id in ("order-actions", "other"):
        client.create_queue(
            parent=f"projects/{PROJECT}/locations/{cloud.location}",
            queue=tasks_v2.Queue(
                name=cloud.queue_path_of(queue_id),
                retry_config=tasks_v2.RetryConfig(
                    max_attempts=10,
                    min_backoff=duration_pb2.Duration(nanos=50_000_000),
                    max_backoff=duration_pb2.Duration(nanos=100_000_000),
                ),
            ),
        )
    return cloud


def _dispatch(cloud: CloudSettings, emulator: TasksEmulator, tasks: dict[str, str]) -> None:
    """Create one task per (path -> queue id) entry; wait until every one succeeded."""
    client = tasks_client(cloud)
    for path, queue_id in tasks.items():
        request = tasks_v2.HttpRequest(url=cloud.worker_url + path)
        client.create_task(
            parent=cloud.queue_path_of(queue_id), task=tasks_v2.Task(http_request=request)
        )
    wait_for(
        lambda: emulator.stats()["succeeded"] == len(tasks) and emulator.stats()["in_flight"] == 0,
        what="every task to succeed",
    )


def test_attempt_counts_match_the_dispatches_and_their_answers(
    cloud: CloudSettings, tasks_emulator: TasksEmulator, receiver: Receiver
) -> None:
    receiver.scripts["/fails-twice"] = [503, 503]  # then 200
    receiver.scripts["/fails-once"] = [500]
    _dispatch(
        cloud,
        tasks_emulator,
        {"/ok-1": "order-actions", "/ok-2": "order-actions", "/fails-twice": "order-actions"}
        | {"/fails-once": "other"},
    )
    monitoring = monitoring_client(cloud)
    total = monitoring_v3.Aggregation(
        alignment_period=duration_pb2.Duration(seconds=600), per_series_aligner=Aligner.ALIGN_DELTA
    )
    series = list(monitoring.list_time_series(request=_request(aggregation=total)))
    assert _by_code(series) == {
        ("order-actions", "ok"): 3,
        ("order-actions", "unavailable"): 2,  # 503
        ("other", "ok"): 1,
        ("other", "internal"): 1,  # 500
    }
    assert sum(_by_code(series).values()) == tasks_emulator.stats()["dispatches"]
    assert len(receiver.requests) == tasks_emulator.stats()["dispatches"]
    first = series[0]
    assert first.metric.type == METRIC and first.resource.type == "cloud_tasks_queue"
    assert dict(first.resource.labels) == {
        "project_id": PROJECT,
        "location": cloud.location,
        "queue_id": "order-actions",
    }
    assert first.metric_kind == metric_pb2.MetricDescriptor.MetricKind.DELTA

    # Filters on labels, and the pager following page tokens one series at a time.
    failed = _request(
        filter=f'metric.type="{METRIC}" resource.labels.queue_id="order-actions" '
        'AND metric.label.response_code = "unavailable"',
        aggregation=total,
    )
    assert _by_code(list(monitoring.list_time_series(request=failed))) == {
        ("order-actions", "unavailable"): 2
    }
    paged = list(monitoring.list_time_series(request=_request(aggregation=total, page_size=1)))
    assert _by_code(paged) == _by_code(series)

    # Raw points: one per whole minute (the current one ends in the future).
    raw = _request(interval=_interval(time.time() - 600, time.time() + 60))
    assert _by_code(list(monitoring.list_time_series(request=raw))) == _by_code(series)
    for point in (p for s in monitoring.list_time_series(request=raw) for p in s.points):
        assert (point.interval.end_time - point.interval.start_time).total_seconds() == 60

    # The console's reading: ALIGN_RATE over the newest minute, per queue.
    rates = AttemptMonitor(monitoring, PROJECT, cloud.location, timeout_s=5).read()
    assert rates.unavailable == ""
    assert rates.of("order-actions") is not None and rates.of("other") is not None
    assert rates.of("order-actions").dispatches_per_s == pytest.approx(5 / 60)  # type: ignore[union-attr]
    assert rates.of("order-actions").retries_per_s == pytest.approx(2 / 60)  # type: ignore[union-attr]
    assert rates.of("other").retries_per_s == pytest.approx(1 / 60)  # type: ignore[union-attr]
    assert rates.of("idle").dispatches_per_s == 0.0  # type: ignore[union-attr]


def test_requests_it_cannot_answer_are_refused_saying_why(cloud: CloudSettings) -> None:
    monitoring = monitoring_client(cloud)
    refusals = {
        "serves only metric.type": _request(filter='metric.type = "run.googleapis.com/x"'),
        "cannot filter on 'metric.labels.status'": _request(
            filter=f'metric.type = "{METRIC}" AND metric.labels.status = "x"'
        ),
        'terms KEY = "VALUE" joined by AND': _request(
            filter=f'metric.type = "{METRIC}" OR resource.type = "cloud_tasks_queue"'
        ),
        "no cross-series reducers": _request(
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=60),
                per_series_aligner=Aligner.ALIGN_RATE,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
            )
        ),
        "ALIGN_MEAN is not served": _request(
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=60),
                per_series_aligner=Aligner.ALIGN_MEAN,
            )
        ),
        "projects/PROJECT_ID": _request(name="organizations/1"),
    }
    for message, request in refusals.items():
        with pytest.raises(gexc.InvalidArgument) as refused:
            list(monitoring.list_time_series(request=request))
        assert message in refused.value.message, request.filter


def test_an_unreachable_monitoring_is_a_reason_not_an_error() -> None:
    with refused_port() as port:
        cloud = CloudSettings(project=PROJECT, tasks_emulator_host=f"127.0.0.1:{port}")
        rates = AttemptMonitor(monitoring_client(cloud), PROJECT, "us-central1", 1.0).read()
    assert rates.of("order-actions") is None
    assert "Cloud Monitoring" in rates.unavailable
    assert "unreachable" in rates.unavailable or "within 1 s" in rates.unavailable


def test_counts_are_kept_for_the_retention_only() -> None:
    counts = AttemptCounts(retention_s=60)
    counts.record("projects/p/locations/l/queues/q", 14, at_s=1000.5)  # UNAVAILABLE
    counts.record("projects/p/locations/l/queues/r", 0, at_s=1030.0)
    assert counts.series_keys() == [
        SeriesKey("projects/p/locations/l/queues/q", "unavailable"),
        SeriesKey("projects/p/locations/l/queues/r", "ok"),
    ]
    counts.record("projects/p/locations/l/queues/r", 0, at_s=1061.0)  # q's second is too old
    assert counts.series_keys() == [SeriesKey("projects/p/locations/l/queues/r", "ok")]
    assert counts.seconds(SeriesKey("projects/p/locations/l/queues/r", "ok")) == {1030: 1, 1061: 1}


def test_success_codes() -> None:
    assert is_success("ok") and is_success("OK") and is_success("200") and is_success("204")
    assert not is_success("unavailable") and not is_success("503") and not is_success("")
