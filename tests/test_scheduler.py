"""The local Cloud Scheduler: scheduler.yaml read as gcloud would, cron in a time zone,
the headers and token, retries, one execution at a time; and ``localcloud up``.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
from pathlib import Path

import pytest
import requests
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

from localcloud.oidc import LocalIssuer
from localcloud.scheduler import LocalScheduler, SchedulerConfigError, SchedulerJob
from tests.support.localcloud_up import localcloud_up
from tests.support.receiver import Receiver, wait_for

ROOT = Path(__file__).resolve().parents[1]
OK = {"--schedule": "* * * * *", "--uri": "http://x/"}
VALUES = {"FANOUT_URL": "http://127.0.0.1:9", "SCHEDULER_SA": "sched@p.iam.gserviceaccount.com"}


def test_scheduler_yaml_reads_as_the_job_the_deployment_creates() -> None:
    job = SchedulerJob.from_flags_file(ROOT / "scheduler.yaml", "order-fanout", VALUES)
    assert (job.schedule, job.time_zone, job.http_method) == ("*/5 * * * *", "Etc/UTC", "POST")
    assert job.uri == "http://127.0.0.1:9/fanout" and job.audience == "http://127.0.0.1:9"
    assert job.oidc_email == VALUES["SCHEDULER_SA"]
    assert job.attempt_deadline_s == 180 and job.max_retry_attempts == 3
    assert (job.min_backoff_s, job.max_backoff_s, job.max_doublings) == (10, 60, 2)
    start = dt.datetime(2026, 11, 21, 8, 3, 12, tzinfo=dt.UTC)
    assert job.next_fire(start) == dt.datetime(2026, 11, 21, 8, 5, tzinfo=dt.UTC)


def test_cron_runs_in_the_jobs_time_zone() -> None:
    flags = {"--schedule": "0 9 * * *", "--uri": "http://x/", "--time-zone": "Europe/Paris"}
    job = SchedulerJob.from_flags(flags, "j")
    winter = job.next_fire(dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC))
    summer = job.next_fire(dt.datetime(2026, 7, 10, 12, 0, tzinfo=dt.UTC))
    assert winter.astimezone(dt.UTC).hour == 8 and summer.astimezone(dt.UTC).hour == 7


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"--uri": "http://x/"}, "--schedule is required"),
        ({**OK, "--schedule": "every day"}, "is not cron"),
        ({**OK, "--time-zone": "Mars/Base"}, "time-zone"),
        ({**OK, "--attempt-deadline": "3m"}, "like 180s"),
        ({**OK, "--attempt-deadline": "5s"}, "15s to"),
        ({**OK, "--max-retry-attempts": 9}, "0 to 5"),
        ({**OK, "--uri": "ftp://x/"}, "is not an HTTP(S) URL"),
        ({**OK, "--pubsub-topic": "t"}, "unsupported"),
    ],
)
def test_a_bad_job_is_refused_naming_the_flag(flags: dict[str, object], message: str) -> None:
    with pytest.raises(SchedulerConfigError, match=re.escape(message)):
        SchedulerJob.from_flags(flags, "j")


def test_a_placeholder_without_a_local_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchedulerConfigError, match="no local value for SCHEDULER_SA"):
        SchedulerJob.from_flags_file(ROOT / "scheduler.yaml", "j", {"FANOUT_URL": "http://x"})


def test_an_execution_sends_schedulers_headers_and_token_and_retries_failures(
    receiver: Receiver,
) -> None:
    receiver.scripts["/fanout"] = [503, 500]  # then 200
    with LocalIssuer() as issuer:
        job = SchedulerJob(
            name="j",
            schedule="* * * * *",
            uri=receiver.url("/fanout"),
            oidc_email="sched@p.iam.gserviceaccount.com",
            audience="https://fanout.example",
            max_retry_attempts=3,
            min_backoff_s=0.05,
            max_backoff_s=0.1,
        )
        scheduler = LocalScheduler(job, "projects/p/locations/l/jobs/j", issuer.mint)
        fire = dt.datetime(2026, 11, 21, 8, 5, tzinfo=dt.UTC)
        record = scheduler.run_once(fire)
        assert (record["status"], record["attempts"]) == (200, 3)
        calls = receiver.at("/fanout")
        assert len(calls) == 3
        headers = calls[0].headers
        assert headers["user-agent"] == "Google-Cloud-Scheduler"
        assert headers["x-cloudscheduler"] == "true"
        assert headers["x-cloudscheduler-jobname"] == "projects/p/locations/l/jobs/j"
        assert headers["x-cloudscheduler-scheduletime"] == "2026-11-21T08:05:00+00:00"
        token = headers["authorization"].removeprefix("Bearer ")
        claims = id_token.verify_token(
            token, google_requests.Request(), "https://fanout.example", certs_url=issuer.certs_url
        )
        assert claims["email"] == "sched@p.iam.gserviceaccount.com"


def test_retries_stop_at_the_retry_count_and_a_slow_answer_is_abandoned(
    receiver: Receiver,
) -> None:
    receiver.delay_s = 1.0
    job = SchedulerJob(
        name="j", schedule="* * * * *", uri=receiver.url("/slow"), attempt_deadline_s=0.3,
        max_retry_attempts=1, min_backoff_s=0.05,
    )  # fmt: skip
    record = LocalScheduler(job, "jobs/j", lambda a, e: "").run_once(dt.datetime.now(dt.UTC))
    assert (record["status"], record["attempts"]) == (504, 2)
    assert "attempt deadline" in record["detail"]


def test_never_two_executions_at_once(receiver: Receiver) -> None:
    receiver.delay_s = 2.5  # each execution outlasts two ticks
    job = SchedulerJob(name="j", schedule="* * * * * *", uri=receiver.url("/fanout"))
    scheduler = LocalScheduler(job, "jobs/j", lambda a, e: "").start()
    try:
        wait_for(lambda: len(scheduler.executions) >= 2, timeout_s=30)
    finally:
        scheduler.stop()
    assert receiver.max_concurrent == 1  # ticks during an execution were skipped


@pytest.mark.usefixtures("firestore_emulator")  # `up` uses it, as a user's: no JVM of its own
def test_localcloud_up_runs_the_schedule_until_interrupted(tmp_path: Path) -> None:
    schedule = ("--orders", "20", "--schedule", "* * * * * */3")
    with localcloud_up(tmp_path, *schedule) as (process, log):
        wait_for(lambda: log.read_text().count("[scheduler]") >= 2, timeout_s=120)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    text = log.read_text()
    assert code == 130, text
    runs = [line for line in text.splitlines() if line.startswith("[scheduler]")]
    assert "200 after 1 attempt(s)" in runs[0] and "orders 20, tasks created 60" in runs[0]
    assert "finished: orders 0" in runs[1]  # nothing pending any more
    fanout_url = re.search(r"fanout +(http://\S+)", text).group(1)  # type: ignore[union-attr]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{fanout_url}/healthz", timeout=5)
