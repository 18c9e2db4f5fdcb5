"""Queue declarations (YAML file and TASKS_EMULATOR_QUEUES) and the REST surface's errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localcloud.tasks.config import QueueConfigError, load_queues, parse_queues
from localcloud.tasks.server import TasksEmulator


def test_yaml_file_and_environment_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "envproj")
    monkeypatch.delenv("TASKS_LOCATION", raising=False)
    path = tmp_path / "q.yaml"
    path.write_text(
        "location: europe-west1\n"
        "queues:\n"
        "  - plain\n"
        "  - name: slow\n"
        "    rate_limits: {max_dispatches_per_second: 50, max_concurrent_dispatches: 10}\n"
        "    retryConfig: {maxAttempts: -1, minBackoff: 0.5, maxBackoff: 10s, maxDoublings: 3,\n"
        "                  maxRetryDuration: 600}\n"
    )
    plain, slow, a, b = load_queues(path, "a, projects/p/locations/l/queues/b")
    assert plain.name == "projects/envproj/locations/europe-west1/queues/plain"
    assert plain.max_dispatches_per_second == 500 and plain.max_burst_size == 100
    assert (slow.max_dispatches_per_second, slow.max_concurrent_dispatches) == (50, 10)
    assert slow.max_burst_size == 10
    retry = slow.retry
    assert (retry.max_attempts, retry.min_backoff_s, retry.max_backoff_s) == (-1, 0.5, 10.0)
    assert (retry.max_doublings, retry.max_retry_duration_s) == (3, 600.0)
    assert a.name == "projects/envproj/locations/us-central1/queues/a"
    assert b.name == "projects/p/locations/l/queues/b"
    assert load_queues(None, "") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("queues: [{rateLimits: {}}]", "queue #1: each queue needs a name"),
        ("[{name: q, rateLimits: {maxDispatchesPerSecond: 900}}]", r"max_dispatches_per_second"),
        ("[{name: q, retryConfig: {maxAttempts: nope}}]", r"queue #1 \(.*/queues/q\)"),
        ("[{name: bad_id}]", "Invalid queue name"),
        ("{queues: 3}", "expected a list of queues"),
        ("[a, {name: b, noSuchField: 1}]", r"queue #2 \(.*/queues/b\)"),
        ("{: [", "not valid YAML"),
    ],
)
def test_bad_declarations_name_the_source_and_entry(text: str, message: str) -> None:
    with pytest.raises(QueueConfigError, match=message) as info:
        parse_queues(text, "queues.yaml")
    assert str(info.value).startswith("queues.yaml")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(QueueConfigError, match="Cannot read the queue file"):
        load_queues(tmp_path / "missing.yaml")


@pytest.fixture(scope="module")
def rest() -> Iterator[str]:
    with TasksEmulator(dispatch_threads=2) as emulator:
        yield emulator.rest_url


def test_rest_errors_use_google_error_shape(rest: str) -> None:
    base = rest + "v2/projects/p/locations/l"
    created = requests.post(base + "/queues", json={"name": "projects/p/locations/l/queues/r"})
    assert created.status_code == 200 and created.json()["state"] == "RUNNING"
    again = requests.post(base + "/queues", json={"name": "projects/p/locations/l/queues/r"})
    assert again.status_code == 409
    assert again.json()["error"]["status"] == "ALREADY_EXISTS"
    missing = requests.get(base + "/queues/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    bad = requests.post(base + "/queues/r/tasks", data=b"{not json")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    task = {"task": {"name": "projects/p/locations/l/queues/r/tasks/a.b", "httpRequest": {}}}
    invalid = requests.post(base + "/queues/r/tasks", data=json.dumps(task))
    assert invalid.status_code == 400
    assert invalid.json()["error"]["status"] == "INVALID_ARGUMENT"
    unknown = requests.get(rest + "v1/whatever")
    assert unknown.status_code == 404
    iam = requests.post(base + "/queues/r:getIamPolicy", json={})
    assert iam.status_code == 501 and iam.json()["error"]["status"] == "UNIMPLEMENTED"


def test_rest_queue_stats_with_read_mask(rest: str) -> None:
    base = rest + "v2/projects/p/locations/l/queues"
    requests.post(base, json={"name": "projects/p/locations/l/queues/s"}).raise_for_status()
    requests.post(base + "/s:pause", json={}).raise_for_status()
    task = {"task": {"httpRequest": {"url": "http://127.0.0.1:9/x"}}}
    requests.post(base + "/s/tasks", json=task).raise_for_status()
    plain = requests.get(base + "/s").json()
    assert "stats" not in plain and plain["state"] == "PAUSED"
    masked = requests.get(base + "/s", params={"readMask": "name,stats"}).json()
    assert set(masked) == {"name", "stats"}
    assert masked["stats"]["tasksCount"] == "1"  # int64 is a JSON string
    assert masked["stats"]["oldestEstimatedArrivalTime"]
    listed = requests.get(base, params={"readMask": "name,stats", "pageSize": "10"}).json()
    assert [q["stats"]["tasksCount"] for q in listed["queues"] if q["name"].endswith("/s")] == ["1"]
    wrong = requests.get(base + "/s", params={"readMask": "nope"})
    assert wrong.status_code == 400 and "read_mask" in wrong.json()["error"]["message"]
