"""The local Cloud Scheduler: runs the job described by ``scheduler.yaml``.

It reads the same gcloud flags file the deployment uses, with the deployment's
``${...}`` placeholders filled by local values, fires on the cron schedule in the
job's time zone (croniter), and sends what Cloud Scheduler sends: ``POST`` with
``User-Agent: Google-Cloud-Scheduler``, ``X-CloudScheduler: true``, the job name,
the schedule time (RFC 3339) and an OIDC token from the local issuer. Each
attempt waits at most the attempt deadline; a failed attempt (non-2xx, timeout,
connection error) is retried by the job's retry config. Executions run one at a
time: a tick that comes while one is still running is skipped, as Cloud
Scheduler never runs two executions of a job at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from croniter import croniter
from google.protobuf import duration_pb2

from localcloud.errors import LocalCloudError
from localcloud.tasks.retry import RetryPolicy, backoff_s, should_retry

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
DEFAULT_ATTEMPT_DEADLINE_S = 180.0  # Cloud Scheduler's default for HTTP targets


class SchedulerConfigError(LocalCloudError):
    """Raised when ``scheduler.yaml`` cannot describe a job; the message says which flag."""


@dataclass(frozen=True)
class SchedulerJob:
    """An HTTP job as ``gcloud scheduler jobs create http --flags-file`` would create it.

    Durations are in seconds; ``max_retry_attempts`` counts retries after the
    first attempt (Cloud Scheduler's ``retry_count``).
    """

    name: str
    schedule: str
    uri: str
    time_zone: str = "Etc/UTC"
    http_method: str = "POST"
    oidc_email: str = ""
    audience: str = ""
    attempt_deadline_s: float = DEFAULT_ATTEMPT_DEADLINE_S
    max_retry_attempts: int = 0
    min_backoff_s: float = 5.0
    max_backoff_s: float = 3600.0
    max_doublings: int = 5
    max_retry_duration_s: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_flags_file(
        cls,
        path: Path,
        name: str,
        values: Mapping[str, str],
        schedule_override: str | None = None,
    ) -> SchedulerJob:
        """Read the flags file at ``path``, filling ``${KEY}`` from ``values``."""
        text = path.read_text()
        missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
        if missing:
            raise SchedulerConfigError(f"{path}: no local value for {', '.join(missing)}")
        text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)
        try:
            flags = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SchedulerConfigError(f"{path} is not YAML: {exc}") from None
        if not isinstance(flags, dict):
            raise SchedulerConfigError(f"{path} must map --flag names to values")
        return cls.from_flags(flags, name, str(path), schedule_override)

    @classmethod
    def from_flags(
        cls,
        flags: Mapping[str, Any],
        name: str,
        source: str = "flags",
        schedule_override: str | None = None,
    ) -> SchedulerJob:
        """Build the job from gcloud flag names (``--schedule`` ...) and their values."""
        known = {
            "--schedule", "--time-zone", "--uri", "--http-method", "--headers",
            "--oidc-service-account-email", "--oidc-token-audience", "--attempt-deadline",
            "--max-retry-attempts", "--min-backoff", "--max-backoff", "--max-doublings",
            "--max-retry-duration", "--location", "--description",
        }  # fmt: skip
        unknown = sorted(set(flags) - known)
        if unknown:
            raise SchedulerConfigError(f"{source}: unsupported flag {', '.join(unknown)}")
        for required in ("--schedule", "--uri"):
            if required not in flags:
                raise SchedulerConfigError(f"{source}: {required} is required")
        job = cls(
            name=name,
            schedule=schedule_override or str(flags["--schedule"]),
            uri=str(flags["--uri"]),
            time_zone=str(flags.get("--time-zone", "Etc/UTC")),
            http_method=str(flags.get("--http-method", "POST")).upper(),
            oidc_email=str(flags.get("--oidc-service-account-email", "")),
            audience=str(flags.get("--oidc-token-audience", "") or flags["--uri"]),
            attempt_deadline_s=_seconds(flags, "--attempt-deadline", DEFAULT_ATTEMPT_DEADLINE_S),
            max_retry_attempts=int(flags.get("--max-retry-attempts", 0)),
            min_backoff_s=_seconds(flags, "--min-backoff", 5.0),
            max_backoff_s=_seconds(flags, "--max-backoff", 3600.0),
            max_doublings=int(flags.get("--max-doublings", 5)),
            max_retry_duration_s=_seconds(flags, "--max-retry-duration", 0.0),
            headers=_headers(flags.get("--headers", "")),
        )
        job.check(source)
        return job

    def check(self, source: str) -> None:
        """Refuse what Cloud Scheduler would refuse, naming the flag."""
        if not croniter.is_valid(self.schedule):
            raise SchedulerConfigError(f"{source}: --schedule {self.schedule!r} is not cron")
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            message = f"{source}: unknown --time-zone {self.time_zone!r}"
            raise SchedulerConfigError(message) from None
        if not 15 <= self.attempt_deadline_s <= 1800:
            raise SchedulerConfigError(f"{source}: --attempt-deadline must be 15s to 1800s")
        if not 0 <= self.max_retry_attempts <= 5:
            raise SchedulerConfigError(f"{source}: --max-retry-attempts must be 0 to 5")
        if not self.uri.startswith(("http://", "https://")):
            raise SchedulerConfigError(f"{source}: --uri {self.uri!r} is not an HTTP(S) URL")

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """Return the first scheduled time after ``after``, in the job's time zone."""
        local = after.astimezone(zoneinfo.ZoneInfo(self.time_zone))
        fire: dt.datetime = croniter(self.schedule, local).get_next(dt.datetime)
        return fire

    @property
    def retry(self) -> RetryPolicy:
        """The job's retry config as a retry policy (attempts count the first one)."""
        return RetryPolicy(
            max_attempts=self.max_retry_attempts + 1,
            min_backoff_s=self.min_backoff_s,
            max_backoff_s=self.max_backoff_s,
            max_doublings=self.max_doublings,
            max_retry_duration_s=self.max_retry_duration_s,
        )


def _seconds(flags: Mapping[str, Any], flag: str, default: float) -> float:
    value = flags.get(flag)
    if value is None:
        return default
    text = f"{value}s" if isinstance(value, int | float) else str(value)
    duration = duration_pb2.Duration()
    try:
        duration.FromJsonString(text)
    except ValueError:
        message = f"{flag} {value!r}: write seconds with an s, like 180s"
        raise SchedulerConfigError(message) from None
    return float(duration.ToTimedelta().total_seconds())


def _headers(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    pairs = [item.partition("=") for item in str(value).split(",") if item]
    return {key.strip(): val.strip() for key, _, val in pairs}


TokenSource = Callable[[str, str], str]  # (audience, email) -> OIDC token


class LocalScheduler:
    """Fires one job on its schedule in a background thread until :meth:`stop`."""

    def __init__(
        self,
        job: SchedulerJob,
        job_path: str,
        mint: TokenSource,
        on_execution: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Run ``job`` (full resource name ``job_path``), signing tokens with ``mint``."""
        self.job = job
        self.job_path = job_path
        self._mint = mint
        self._on_execution = on_execution
        self._stopping = threading.Event()
        self._busy = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._session = requests.Session()
        self.executions: list[dict[str, Any]] = []

    def start(self) -> LocalScheduler:
        """Start firing; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop firing; an execution in progress is abandoned."""
        self._stopping.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        fire = self.job.next_fire(dt.datetime.now(dt.UTC))
        while not self._stopping.wait(max(0.0, (fire - dt.datetime.now(dt.UTC)).total_seconds())):
            if self._busy.acquire(blocking=False):
                threading.Thread(target=self._execute, args=(fire,), daemon=True).start()
            else:
                log.warning("scheduler: %s skipped, the last execution still runs", fire)
            fire = self.job.next_fire(max(fire, dt.datetime.now(dt.UTC)))

    def _execute(self, scheduled: dt.datetime) -> None:
        """One execution: attempts with backoff until success or the retry config gives up."""
        try:
            record = self.run_once(scheduled)
            self.executions.append(record)
            if self._on_execution is not None:
                self._on_execution(record)
        finally:
            self._busy.release()

    def run_once(self, scheduled: dt.datetime) -> dict[str, Any]:
        """Run one execution of the job for ``scheduled``; return what happened."""
        first = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            status, detail = self._attempt(scheduled)
            if 200 <= status < 300:
                break
            elapsed_s = time.monotonic() - first
            if not should_retry(self.job.retry, attempt, elapsed_s) or self._stopping.is_set():
                break
            delay_s = backoff_s(
                attempt, self.job.min_backoff_s, self.job.max_backoff_s, self.job.max_doublings
            )
            log.warning("scheduler: attempt %d: %s; retry in %.0f s", attempt, detail, delay_s)
            if self._stopping.wait(delay_s):
                break
        return {
            "scheduleTime": scheduled.isoformat(),
            "attempts": attempt,
            "status": status,
            "detail": detail[:300],
            "body": detail,
            "seconds": round(time.monotonic() - first, 3),
        }

    def _attempt(self, scheduled: dt.datetime) -> tuple[int, str]:
        """One attempt: the status (504 on timeout, 503 unreachable) and the answer."""
        headers = {
            **self.job.headers,
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": self.job_path,
            "X-CloudScheduler-ScheduleTime": scheduled.astimezone(dt.UTC).isoformat(),
        }
        if self.job.oidc_email:
            token = self._mint(self.job.audience, self.job.oidc_email)
            headers["Authorization"] = f"Bearer {token}"
        try:
            answer = self._session.request(
                self.job.http_method,
                self.job.uri,
                headers=headers,
                timeout=self.job.attempt_deadline_s,
            )
        except requests.Timeout:
            return 504, f"no answer within the {self.job.attempt_deadline_s:.0f} s attempt deadline"
        except requests.RequestException as exc:
            return 503, f"cannot reach {self.job.uri}: {exc}"
        return answer.status_code, answer.text
