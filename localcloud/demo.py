"""The demo: the whole path on the local cloud, with a report at the end.

Starts the stack, seeds N pending orders, calls ``POST /fanout`` the way Cloud
Scheduler does (its headers and an OIDC token from the local issuer), shows
progress until every order is completed, prints a report and stops everything.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import click
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from localcloud.errors import DemoTimeoutError, LocalCloudError
from localcloud.progress import Progress
from localcloud.seed import seed
from localcloud.stack import LocalStack, StackOptions
from orders.schema import ORDERS, OrderStatus

SCHEDULER_EMAIL = "scheduler-invoker@order-fanout-demo.iam.gserviceaccount.com"
SCHEDULER_JOB = "order-fanout-every-5-minutes"
ATTEMPT_DEADLINE_S = 180.0  # Cloud Scheduler's default HTTP attempt deadline
POLL_INTERVAL_S = 0.25


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs: how many orders, its timeout (seconds), and the stack."""

    orders: int = 1000
    timeout_s: float = 300.0
    json_output: bool = False
    stack: StackOptions = field(default_factory=StackOptions)


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo; return the report. Raises DemoTimeoutError (with the report) on timeout."""
    stack = LocalStack(options.stack)
    echo = _echo(options.json_output)
    echo(f"Starting the local cloud (logs in {stack.log_dir}) ...")
    stack.start()
    try:
        # This process is the launcher: its own clients talk to the emulator it started.
        os.environ["FIRESTORE_EMULATOR_HOST"] = stack.firestore.host_port
        db = firestore.Client(project=options.stack.project)
        echo(f"  Firestore emulator  {stack.firestore.host_port}")
        echo(f"  Cloud Tasks emulator {stack.tasks.address}")
        echo(f"  worker  {stack.worker_url}\n  fanout  {stack.fanout_url}")
        echo(f"Seeding {options.orders} pending orders ...")
        seed(db, options.orders)
        report = _fan_out_and_wait(stack, db, options)
    finally:
        stack.stop()
    if report["completed"] < report["orders"]:
        raise DemoTimeoutError(
            f"only {report['completed']} of {report['orders']} orders completed within "
            f"{options.timeout_s:.0f} s; the services' logs are in {stack.log_dir}",
            report,
        )
    stack.remove_logs()
    return report


def _fan_out_and_wait(
    stack: LocalStack, db: firestore.Client, options: DemoOptions
) -> dict[str, Any]:
    """Trigger the fan-out as Cloud Scheduler would and wait for every order to complete."""
    completed_query = (
        db.collection(ORDERS)
        .where(filter=FieldFilter("status", "==", OrderStatus.COMPLETED.value))
        .count()
    )
    progress = Progress(options.orders, "orders completed")
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(_trigger, stack)
        completed = 0
        while completed < options.orders and time.monotonic() - started < options.timeout_s:
            time.sleep(POLL_INTERVAL_S)
            completed = int(completed_query.get()[0][0].value)
            progress.update(completed)
            if call.done() and call.exception() is not None:
                break
        progress.close()
        summary = call.result()
    seconds = time.monotonic() - started
    stats = stack.tasks.stats()
    return {
        "orders": options.orders,
        "completed": completed,
        "tasks_created": int(summary.get("tasks_created", 0)),
        "deduplicated": int(summary.get("deduplicated", 0)),
        "failed": int(summary.get("failed", 0)),
        "dispatches": int(stats.get("dispatches", 0)),
        "retries": int(stats.get("retries", 0)),
        "fanout_seconds": float(summary.get("seconds", 0.0)),
        "seconds": round(seconds, 3),
        "orders_per_s": round(completed / seconds, 1) if seconds else 0.0,
        "run_id": summary.get("run_id", ""),
    }


def _trigger(stack: LocalStack) -> dict[str, Any]:
    """POST /fanout with Cloud Scheduler's headers and an OIDC token; return the summary."""
    token = stack.tasks.issuer.mint(audience=stack.fanout_url, email=SCHEDULER_EMAIL)
    cloud = stack.cloud
    answer = requests.post(
        f"{stack.fanout_url}/fanout",
        headers={
            "Authorization": f"Bearer {token}",
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": (
                f"projects/{cloud.project}/locations/{cloud.location}/jobs/{SCHEDULER_JOB}"
            ),
            "X-CloudScheduler-ScheduleTime": dt.datetime.now(dt.UTC).isoformat(),
        },
        timeout=ATTEMPT_DEADLINE_S,
    )
    if answer.status_code != 200:
        raise LocalCloudError(f"POST /fanout answered {answer.status_code}: {answer.text[:500]}")
    summary: dict[str, Any] = answer.json()
    return summary


def format_report(report: dict[str, Any]) -> str:
    """Return the report as aligned human-readable lines."""
    rows = [
        ("orders", report["orders"], "orders seeded as pending"),
        ("completed", report["completed"], "orders with all three actions done"),
        ("tasks created", report["tasks_created"], "named tasks the fan-out created"),
        ("deduplicated", report["deduplicated"], "creates refused as ALREADY_EXISTS"),
        ("failed", report["failed"], "tasks the fan-out could not create"),
        ("retries", report["retries"], "deliveries the queue had to retry"),
        ("fan-out seconds", report["fanout_seconds"], "time /fanout took"),
        ("seconds", report["seconds"], "from the trigger to the last completion"),
        ("orders/s", report["orders_per_s"], "completed orders per second, end to end"),
    ]
    return "\n".join(f"  {name:<16}{value!s:>10}   {meaning}" for name, value, meaning in rows)


def _echo(quiet: bool) -> Any:
    """Return a function printing to stdout, or to stderr when stdout carries JSON."""
    return lambda text: click.echo(text, err=quiet)


def dump(report: dict[str, Any]) -> str:
    """Return the report as one JSON line."""
    return json.dumps(report, sort_keys=True)
