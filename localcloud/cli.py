"""The ``localcloud`` command: the local cloud's emulators, the demo, and ``up``."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import click

from localcloud.chaos.command import chaos
from localcloud.demo import DemoOptions, dump, format_report, run_demo
from localcloud.errors import DemoTimeoutError, LocalCloudError
from localcloud.stack import StackOptions
from localcloud.tasks.command import tasks_emulator
from localcloud.up import UpOptions, run_up
from orders.queue_group import MAX_QUEUE_COUNT

# An option that reads its environment variable and shows it and its default in --help.
_option = functools.partial(click.option, show_envvar=True, show_default=True)

_F = TypeVar("_F", bound=Callable[..., Any])


def _queues_option(envvar: str, more_help: str = "") -> Callable[[_F], _F]:
    """Return the ``--queues`` option: the size of the queue group (``TASKS_QUEUE_COUNT``)."""
    option: Callable[[_F], _F] = _option(
        "--queues",
        type=click.IntRange(1, MAX_QUEUE_COUNT),
        default=1,
        envvar=envvar,
        help=f"Queues in the queue group (TASKS_QUEUE_COUNT){more_help}.",
    )
    return option


EXIT_INCOMPLETE = 1  # the demo ran but not every order completed in time
EXIT_SETUP = 2  # something the demo needs is missing or did not start
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


@click.group()
def main() -> None:
    """Run order-fanout on a laptop against a local cloud that speaks the real protocols."""


main.add_command(tasks_emulator, name="tasks-emulator")
main.add_command(chaos, name="chaos")


@main.command()
@_option(
    "--orders",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    envvar="DEMO_ORDERS",
    help="Pending orders to seed and fan out.",
)
@_option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1),
    default=300.0,
    envvar="DEMO_TIMEOUT_SECONDS",
    help="Seconds to wait for every order to complete.",
)
@_option(
    "--rate",
    type=click.FloatRange(0.1, 500),
    default=500.0,
    envvar="DEMO_MAX_DISPATCHES_PER_SECOND",
    help="The queue's max_dispatches_per_second (Cloud Tasks allows at most 500).",
)
@_option(
    "--concurrency",
    type=click.IntRange(1, 5000),
    default=100,
    envvar="DEMO_MAX_CONCURRENT_DISPATCHES",
    help="The queue's max_concurrent_dispatches.",
)
@_queues_option("DEMO_QUEUES", "; the limits above apply to each")
@click.option(
    "--json",
    "json_output",
    is_flag=True,
    help="Print the report as one JSON object on the last line of stdout.",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Serve the console and keep everything running after the report, until Ctrl-C.",
)
def demo(
    orders: int,
    timeout_s: float,
    rate: float,
    concurrency: int,
    json_output: bool,
    queues: int,
    keep_running: bool,
) -> None:
    """Start everything, fan out ORDERS orders, wait for completion, report, stop."""  # fmt: skip
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)  # the terminal closed
    stack = StackOptions(
        max_dispatches_per_second=rate, max_concurrent_dispatches=concurrency, queues=queues
    )
    options = DemoOptions(
        orders=orders,
        timeout_s=timeout_s,
        json_output=json_output,
        keep_running=keep_running,
        stack=stack,
    )
    try:
        report = run_demo(options)
    except DemoTimeoutError as exc:
        _print_report(exc.report, json_output)
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INCOMPLETE)
    except LocalCloudError as exc:  # e.g. EmulatorMissingError, with how to install it
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_SETUP)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: every process the demo started has been stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _print_report(report, json_output)


@main.command()
@_option(
    "--scheduler-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=Path("scheduler.yaml"),
    envvar="LOCALCLOUD_SCHEDULER_FILE",
    help="The Scheduler job's gcloud flags file.",
)
@_option(
    "--schedule",
    envvar="LOCALCLOUD_SCHEDULE",
    help="A cron schedule used instead of the file's (a 6th field counts seconds).",
)
@_option(
    "--orders",
    type=click.IntRange(0, 1_000_000),
    default=0,
    envvar="LOCALCLOUD_ORDERS",
    help="Pending orders to seed at start-up.",
)
@_queues_option("LOCALCLOUD_QUEUES")
def up(scheduler_file: Path, schedule: str | None, orders: int, queues: int) -> None:
    """Start everything and keep it running, the Scheduler job firing on its cron, until Ctrl-C."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    options = UpOptions(
        scheduler_file=scheduler_file,
        schedule=schedule,
        orders=orders,
        stack=StackOptions(queues=queues),
    )
    try:
        run_up(options, click.echo, threading.Event())
    except LocalCloudError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_SETUP)
    except KeyboardInterrupt:
        click.echo("\nstopped: every process `up` started has been stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _print_report(report: dict[str, object], json_output: bool) -> None:
    click.echo("\nReport", err=json_output)
    click.echo(format_report(report), err=json_output)
    if json_output:
        click.echo(dump(report))


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM or SIGHUP into SystemExit, so every ``finally`` stops its processes."""
    raise SystemExit(128 + signum)
