"""The deployment files: deploy.sh's plan (--dry-run, no gcloud called) and the queue
flags files applied by the real gcloud to the emulator's REST surface.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localcloud.tasks.server import TasksEmulator
from tests.support.deploy_plan import plan
from tests.support.gcloud import Gcloud

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_prints_every_step_and_calls_nothing(tmp_path: Path) -> None:
    result = plan(tmp_path, "--dry-run", "--project", "acme-prod", "--region", "europe-west1")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "gcloud-called").exists()
    out = result.stdout
    g = "gcloud --project=acme-prod --quiet"
    sa = "iam.gserviceaccount.com"
    for account in ("fanout", "worker", "tasks-invoker", "scheduler-invoker"):
        assert f"{g} iam service-accounts create {account} " in out
    lines = out.splitlines()
    deploys = [line for line in lines if " run deploy " in line]
    assert len(deploys) == 3  # worker, fanout, console
    for service, account in (("order-worker", "worker"), ("order-fanout", "fanout")):
        line = next(d for d in deploys if f"run deploy {service} " in d)
        assert "--no-allow-unauthenticated" in line
        assert f"--service-account={account}@acme-prod.{sa}" in line
        assert f"SERVICE={service.removeprefix('order-')}" in line
    fanout_line = next(d for d in deploys if "run deploy order-fanout " in d)
    worker_line = next(d for d in deploys if "run deploy order-worker " in d)
    # The services agree with the files that configure their callers.
    assert "FANOUT_ATTEMPT_DEADLINE_SECONDS=180" in fanout_line  # scheduler.yaml
    assert "TASKS_MAX_ATTEMPTS=20" in worker_line  # deploy/queue.yaml
    assert "--concurrency=32" in worker_line  # orders/serving.py: 2 processes of 16 threads
    assert "WAREHOUSE_URL=${WAREHOUSE_URL}" in worker_line  # unset: a placeholder in the plan
    assert "FANOUT_URL=https://order-fanout-${PROJECT_NUMBER}.europe-west1.run.app" in fanout_line
    bindings = [
        ("run services add-iam-policy-binding order-worker", "tasks-invoker", "roles/run.invoker"),
        ("run services add-iam-policy-binding order-fanout", "scheduler-invoker", "run.invoker"),
        ("projects add-iam-policy-binding acme-prod", "fanout", "roles/cloudtasks.enqueuer"),
        (f"service-accounts add-iam-policy-binding tasks-invoker@acme-prod.{sa}", "fanout",
         "roles/iam.serviceAccountUser"),
    ]  # fmt: skip
    for command, member, role in bindings:
        assert any(
            command in line and f"serviceAccount:{member}@acme-prod.{sa}" in line and role in line
            for line in lines
        ), command
    queue_flags = f"--flags-file={ROOT}/deploy/queue.yaml"
    assert f"tasks queues create order-actions --location=europe-west1 {queue_flags}" in out
    assert "--field-config=field-path=fanout.queuedAt,order=ascending" in out
    assert "scheduler jobs create http order-fanout --location=europe-west1 --flags-file=" in out
    rendered = [line for line in lines if line.startswith("#   --")]
    fanout_url = "https://order-fanout-${PROJECT_NUMBER}.europe-west1.run.app"
    assert f'#   --uri: "{fanout_url}/fanout"' in rendered
    assert f'#   --oidc-service-account-email: "scheduler-invoker@acme-prod.{sa}"' in rendered
    assert "${FANOUT_URL}" not in out and "${SCHEDULER_SA}" not in out


def test_bad_arguments_are_refused_with_a_reason(tmp_path: Path) -> None:
    missing = plan(tmp_path, "--dry-run")
    assert missing.returncode == 2 and "--project PROJECT_ID" in missing.stderr
    unknown = plan(tmp_path, "--project", "p", "--frobnicate")
    assert unknown.returncode == 2 and "unknown argument '--frobnicate'" in unknown.stderr
    no_warehouse = plan(tmp_path, "--project", "p")  # a real deployment needs it
    assert no_warehouse.returncode == 2 and "set WAREHOUSE_URL" in no_warehouse.stderr
    assert not (tmp_path / "gcloud-called").exists()


@pytest.mark.parametrize(
    ("queue", "flags_file", "expected"),
    [
        ("order-actions", "queue.yaml", (200.0, 200, 20, "1s", "600s", 5, "0s")),
        ("fanout-continuations", "continuation-queue.yaml", (1, 1, 10, "10s", "300s", 3, "3600s")),
    ],
)
def test_the_queue_flags_files_apply_with_the_real_gcloud(
    gcloud: tuple[Gcloud, TasksEmulator],
    queue: str,
    flags_file: str,
    expected: tuple[float, int, int, str, str, int, str],
) -> None:
    cli, _ = gcloud
    flags = f"--flags-file={ROOT / 'deploy' / flags_file}"
    cli.run("tasks", "queues", "create", queue, "--location=us-central1", flags)
    cli.run("tasks", "queues", "update", queue, "--location=us-central1", flags)  # idempotent
    described = cli.json("tasks", "queues", "describe", queue, "--location=us-central1")
    rate, retry = described["rateLimits"], described["retryConfig"]
    assert (
        rate["maxDispatchesPerSecond"],
        rate["maxConcurrentDispatches"],
        retry["maxAttempts"],
        retry["minBackoff"],
        retry["maxBackoff"],
        retry["maxDoublings"],
        retry["maxRetryDuration"],
    ) == expected
