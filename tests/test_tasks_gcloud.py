"""The real ``gcloud tasks`` CLI against the emulator's REST surface.

gcloud runs with a configuration directory of its own (``CLOUDSDK_CONFIG``) in
which ``api_endpoint_overrides/cloudtasks`` points at the emulator and
``auth/disable_credentials`` is true. Without gcloud the test skips, except
under CI=true, where it fails.
"""

from __future__ import annotations

from pathlib import Path

from localcloud.tasks.server import TasksEmulator
from tests.support.gcloud import PROJECT, Gcloud
from tests.support.receiver import Receiver, wait_for

LOCATION = "us-central1"
FLAGS = """
--location: us-central1
--max-dispatches-per-second: 5
--max-concurrent-dispatches: 3
--max-attempts: 4
--min-backoff: 0.1s
--max-backoff: 2s
--max-doublings: 2
--max-retry-duration: 30s
--log-sampling-ratio: 0.5
"""


def test_gcloud_queues_and_tasks_commands(
    gcloud: tuple[Gcloud, TasksEmulator], tmp_path: Path
) -> None:
    g, _ = gcloud
    target = Receiver()
    try:
        _queues_and_tasks(g, target, tmp_path)
    finally:
        target.close()


def _queues_and_tasks(g: Gcloud, target: Receiver, tmp_path: Path) -> None:
    flags = tmp_path / "queue.yaml"
    flags.write_text(FLAGS)
    loc = f"--location={LOCATION}"
    g.run("tasks", "queues", "create", "q1", f"--flags-file={flags}")
    queue = g.json("tasks", "queues", "describe", "q1", loc)
    assert queue["name"] == f"projects/{PROJECT}/locations/{LOCATION}/queues/q1"
    assert queue["rateLimits"] == {
        "maxDispatchesPerSecond": 5.0,
        "maxConcurrentDispatches": 3,
        "maxBurstSize": 1,
    }
    assert queue["retryConfig"] == {
        "maxAttempts": 4,
        "minBackoff": "0.100s",
        "maxBackoff": "2s",
        "maxDoublings": 2,
        "maxRetryDuration": "30s",
    }
    assert queue["stackdriverLoggingConfig"] == {"samplingRatio": 0.5}
    update = ("tasks", "queues", "update", "q1", loc)
    g.run(*update, "--max-dispatches-per-second=20")
    # gcloud 528 puts header overrides in the request body only with --http-method-override
    # (the mask names them either way, so without it they would be cleared).
    g.run(*update, "--http-method-override=POST", "--http-header-override=X-Queue:q1")
    queue = g.json("tasks", "queues", "describe", "q1", loc)
    assert queue["rateLimits"]["maxDispatchesPerSecond"] == 20.0
    assert queue["httpTarget"]["headerOverrides"] == [{"header": {"key": "X-Queue", "value": "q1"}}]
    assert queue["retryConfig"]["maxAttempts"] == 4  # not named by the update
    listed = g.json("tasks", "queues", "list", loc)
    assert [q["name"].rsplit("/", 1)[-1] for q in listed] == ["q1"]
    g.run("tasks", "queues", "pause", "q1", loc)
    assert g.json("tasks", "queues", "describe", "q1", loc)["state"] == "PAUSED"

    queue_flags = ["--queue=q1", loc]
    g.run(
        "tasks",
        "create-http-task",
        "t1",
        *queue_flags,
        f"--url={target.url('/g')}",
        '--body-content={"a": 1}',
        "--header=Content-Type:application/json",
        "--oidc-service-account-email=invoker@gcloud-test.iam.gserviceaccount.com",
    )
    tasks = g.json("tasks", "list", *queue_flags)
    assert [t["name"].rsplit("/", 1)[-1] for t in tasks] == ["t1"]
    task = g.json("tasks", "describe", "t1", *queue_flags)
    assert task["httpRequest"]["url"] == target.url("/g")
    assert task["httpRequest"]["headers"]["Content-Type"] == "application/json"
    g.run("tasks", "run", "t1", *queue_flags)  # runs although the queue is paused
    wait_for(lambda: len(target.at("/g")) == 1, 20)
    hit = target.at("/g")[0]
    assert hit.body == b'{"a": 1}' and hit.headers["authorization"].startswith("Bearer ")
    assert hit.headers["x-queue"] == "q1"  # the queue's header override

    g.run("tasks", "create-http-task", "t2", *queue_flags, f"--url={target.url('/h')}")
    g.run("tasks", "delete", "t2", *queue_flags)
    missing = g.run("tasks", "describe", "t2", *queue_flags, check=False)
    assert missing.returncode != 0 and "NOT_FOUND" in missing.stderr
    g.run("tasks", "create-http-task", "t3", *queue_flags, f"--url={target.url('/h')}")
    g.run("tasks", "queues", "purge", "q1", loc)
    assert g.json("tasks", "list", *queue_flags) == []
    g.run("tasks", "queues", "resume", "q1", loc)
    assert g.json("tasks", "queues", "describe", "q1", loc)["state"] == "RUNNING"
    g.run("tasks", "queues", "delete", "q1", loc)
    gone = g.run("tasks", "queues", "describe", "q1", loc, check=False)
    assert gone.returncode != 0 and "NOT_FOUND" in gone.stderr
    assert target.at("/h") == []
