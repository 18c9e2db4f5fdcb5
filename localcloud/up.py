"""``localcloud up``: the whole stack, left running, with the local scheduler on.

Starts the emulators and both services (as the demo does), optionally seeds
pending orders, then fires the job of ``scheduler.yaml`` on its cron schedule
against the fanout, printing one line per execution, until Ctrl-C.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.cloud import firestore

from localcloud.console import LocalConsole
from localcloud.processes import wait_for_stop
from localcloud.scheduler import LocalScheduler, SchedulerJob
from localcloud.seed import seed
from localcloud.stack import SCHEDULER_EMAIL, LocalStack, StackOptions

JOB_ID = "order-fanout"


@dataclass(frozen=True)
class UpOptions:
    """What ``up`` runs: the scheduler file, an optional schedule override, orders to seed."""

    scheduler_file: Path = Path("scheduler.yaml")
    schedule: str | None = None
    orders: int = 0
    stack: StackOptions = field(default_factory=StackOptions)


def run_up(options: UpOptions, echo: Callable[[str], None], stop: threading.Event) -> None:
    """Run the stack and the scheduler until ``stop`` is set (or Ctrl-C); stop everything."""
    stack = LocalStack(options.stack)
    echo(f"Starting the local cloud (logs in {stack.log_dir}) ...")
    stack.start()
    scheduler: LocalScheduler | None = None
    console = LocalConsole(stack)
    try:
        job = SchedulerJob.from_flags_file(
            options.scheduler_file,
            JOB_ID,
            {"FANOUT_URL": stack.fanout_url, "SCHEDULER_SA": SCHEDULER_EMAIL},
            options.schedule,
        )
        cloud = stack.cloud
        job_path = f"projects/{cloud.project}/locations/{cloud.location}/jobs/{JOB_ID}"
        if options.orders:
            os.environ["FIRESTORE_EMULATOR_HOST"] = stack.firestore_host
            seed(firestore.Client(project=cloud.project), options.orders)
        scheduler = LocalScheduler(job, job_path, stack.tasks.issuer.mint, _printer(echo))
        echo(f"console  {console.start()}")
        echo(describe(stack, job, options.orders))
        scheduler.start()
        wait_for_stop(stop)
    finally:
        if scheduler is not None:
            scheduler.stop()
        console.stop()
        stack.stop()


def describe(stack: LocalStack, job: SchedulerJob, seeded: int) -> str:
    """Return what is running where, for the person who started it."""
    cloud = stack.cloud
    next_fire = job.next_fire(dt.datetime.now(dt.UTC))
    lines = [
        f"  project              {cloud.project}",
        f"  Firestore emulator   {stack.firestore_host}",
        f"  Cloud Tasks emulator {stack.tasks.address} (gRPC)  {stack.tasks.rest_url} (REST)",
        f"  queues               {', '.join(cloud.queue_ids)}",
        f"  worker               {stack.worker_url}",
        f"  fanout               {stack.fanout_url}",
        f"  scheduler            {job.http_method} {job.uri} on '{job.schedule}' "
        f"({job.time_zone}); next at {next_fire.isoformat()}",
    ]
    if seeded:
        lines.append(f"  seeded               {seeded} pending orders")
    lines.append("Press Ctrl-C to stop everything.")
    return "\n".join(lines)


def _printer(echo: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
    """Return a callback that prints one line per scheduler execution."""

    def show(execution: dict[str, Any]) -> None:
        summary = _json(execution.get("body", ""))
        what = (
            f"run {summary.get('run_id')} {summary.get('state')}: orders {summary.get('orders')}, "
            f"tasks created {summary.get('tasks_created')}, failed {summary.get('failed')}"
            if summary
            else execution["detail"]
        )
        echo(
            f"[scheduler] {execution['scheduleTime']}: {execution['status']} after "
            f"{execution['attempts']} attempt(s), {execution['seconds']} s; {what}"
        )

    return show


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
