"""The demo: the whole path on the local cloud, with a report at the end.

Starts the stack, seeds N pending orders, calls ``POST /fanout`` the way Cloud
Scheduler does (its headers and an OIDC token from the local issuer), shows
progress until every order is completed, prints a report and stops everything.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from localcloud.console import LocalConsole
from localcloud.errors import DemoTimeoutError, LocalCloudError
from localcloud.processes import wait_for_stop
from localcloud.seed import seed
from localcloud.stack import LocalStack, StackOptions
from orders.progress import Progress
from orders.schema import ORDERS, OrderStatus

SCHEDULER_JOB = "order-fanout-every-5-minutes"
ATTEMPT_DEADLINE_S = 180.0  # Cloud Scheduler's default HTTP attempt deadline
POLL_INTERVAL_S = 0.25


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs: how many orders, its timeout (seconds), and the stack."""

    orders: int = 1000
    timeout_s: float = 300.0
    json_output: bool = False
    keep_running: bool = False  # serve the console and keep everything up after the report
    stack: StackOptions = field(default_factory=StackOptions)


def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the demo; return the report. Raises DemoTimeoutError (with the report) on timeout."""
    stack = LocalStack(options.stack)
    echo = _echo(options.json_output)
    echo(f"Starting the local cloud (logs in {stack.log_dir}) ...")
    stack.start()
    console = LocalConsole(stack)
    try:
        if options.keep_running:
            echo(f"console  {console.start()}")
        # This process is the launcher: its own clients talk to the emulator it started.
        os.environ["FIRESTORE_EMULATOR_HOST"] = stack.firestore_host
        db = firestore.Client(project=options.stack.project)
        echo(f"  Firestore emulator  {stack.firestore_host}")
        echo(f"  Cloud Tasks emulator {stack.tasks.address}")
        echo(f"  worker  {stack.worker_url}\n  fanout  {stack.fanout_url}")
        echo(f"Seeding {options.orders} pending orders ...")
        seed(db, options.orders)
        report = _fan_out_and_wait(stack, db, options)
        if options.keep_running:
            _keep_running(echo, report, stack, options.json_output)
    finally:
        console.stop()
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
    call = _Call(lambda: trigger_fanout(stack))  # a daemon thread: Ctrl-C never waits for it
    completed = 0
    while completed < options.orders and time.monotonic() - started < options.timeout_s:
        time.sleep(POLL_INTERVAL_S)
        completed = int(completed_query.get()[0][0].value)
        progress.update(completed)
        if call.failed():
            break
    progress.close()
    # On a timeout the fan-out may still be running: report the emulator's counts then.
    summary = call.result(timeout_s=max(0.0, options.timeout_s - (time.monotonic() - started)))
    seconds = time.monotonic() - started
    stats = stack.tasks.stats()
    return {
        "orders": options.orders,
        "completed": completed,
        "tasks_created": int(summary.get("tasks_created", stats["tasks_created"])),
        "deduplicated": int(summary.get("deduplicated", stats["deduplicated"])),
        "failed": int(summary.get("failed", 0)),
        "dispatches": int(stats.get("dispatches", 0)),
        "retries": int(stats.get("retries", 0)),
        "fanout_seconds": float(summary.get("seconds", 0.0)),
        "seconds": round(seconds, 3),
        "orders_per_s": round(completed / seconds, 1) if seconds else 0.0,
        "run_id": summary.get("run_id", ""),
    }


def _keep_running(
    echo: Callable[[str], None], report: dict[str, Any], stack: LocalStack, json_output: bool
) -> None:
    """Print the report (and its JSON line), then keep everything up until Ctrl-C or SIGTERM."""
    echo("\nReport")
    echo(format_report(report))
    if json_output:  # now, not at the exit: a caller reads it while the stack stays up
        click.echo(dump(report))
    echo(f"Still running (--keep-running; logs in {stack.log_dir}). Press Ctrl-C to stop.")
    wait_for_stop(threading.Event())


class _Call:
    """Runs a function in a daemon thread and hands back its result or exception."""

    def __init__(self, function: Callable[[], dict[str, Any]]) -> None:
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self._thread.start()

    def _run(self, function: Callable[[], dict[str, Any]]) -> None:
        try:
            self._result = function()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def failed(self) -> bool:
        """Tell whether the call has ended with an exception."""
        return not self._thread.is_alive() and self._error is not None

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait up to ``timeout_s`` s; return the result ({} if unfinished) or raise its error."""
        self._thread.join(timeout_s)
        if self._error is not None:
            raise self._error
        return self._result or {}


def trigger_fanout(stack: LocalStack) -> dict[str, Any]:
    """POST /fanout with Cloud Scheduler's headers and an OIDC token; return the summary."""
    token = stack.scheduler_token(stack.fanout_url)
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
