"""``localcloud tasks-emulator``: serve the Cloud Tasks emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from localcloud.tasks.config import load_queues
from localcloud.tasks.dispatcher import DEFAULT_DISPATCH_THREADS
from localcloud.tasks.server import TasksEmulator
from localcloud.tasks.sqlite_task_store import MEMORY
from localcloud.tasks.task_conversion import DEFAULT_MAX_TASK_BYTES
from localcloud.tasks.task_store import DEFAULT_RESERVATION_S

DEFAULT_PORT = 8123
DEFAULT_REST_PORT = 8124
DEFAULT_DB = "localcloud-tasks.sqlite3"
NO_REST = -1


@click.command("tasks-emulator")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="TASKS_EMULATOR_HOST",
    help="Address to listen on. [env: TASKS_EMULATOR_HOST]",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    envvar="TASKS_EMULATOR_PORT",
    help="gRPC port; 0 picks a free one. [env: TASKS_EMULATOR_PORT]",
)
@click.option(
    "--reservation-seconds",
    type=click.FloatRange(min=0),
    default=DEFAULT_RESERVATION_S,
    show_default=True,
    envvar="TASKS_EMULATOR_RESERVATION_SECONDS",
    help="Seconds a finished or deleted task's name stays reserved. "
    "[env: TASKS_EMULATOR_RESERVATION_SECONDS]",
)
@click.option(
    "--dispatch-threads",
    type=click.IntRange(min=1),
    default=DEFAULT_DISPATCH_THREADS,
    show_default=True,
    envvar="TASKS_EMULATOR_DISPATCH_THREADS",
    help="Maximum HTTP dispatch threads per queue. [env: TASKS_EMULATOR_DISPATCH_THREADS]",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    envvar="TASKS_EMULATOR_LATENCY_MS",
    help="Milliseconds added to every gRPC call, to simulate network round-trips. "
    "[env: TASKS_EMULATOR_LATENCY_MS]",
)
@click.option(
    "--rest-port",
    type=click.IntRange(NO_REST, 65535),
    default=DEFAULT_REST_PORT,
    show_default=True,
    envvar="TASKS_EMULATOR_REST_PORT",
    help="Port of the v2 REST surface (for gcloud); 0 picks a free one, -1 serves none. "
    "[env: TASKS_EMULATOR_REST_PORT]",
)
@click.option(
    "--issuer-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    envvar="TASKS_EMULATOR_ISSUER_PORT",
    help="Port of the OIDC issuer that signs the tasks' tokens; 0 keeps the port it had "
    "on the same --db when free (else any). Its key is always kept in --db. "
    "[env: TASKS_EMULATOR_ISSUER_PORT]",
)
@click.option(
    "--db",
    "db_path",
    default=DEFAULT_DB,
    show_default=True,
    envvar="TASKS_EMULATOR_DB",
    help="SQLite file holding queues, tasks and reserved names; ':memory:' keeps nothing. "
    "[env: TASKS_EMULATOR_DB]",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="TASKS_EMULATOR_CONFIG",
    help="YAML file of queues to create (or update) at start-up. [env: TASKS_EMULATOR_CONFIG]",
)
@click.option(
    "--queues",
    "queues_text",
    default="",
    envvar="TASKS_EMULATOR_QUEUES",
    help="Queues to create at start-up, as YAML: 'a,b' or '[{name: a, rateLimits: {...}}]'. "
    "[env: TASKS_EMULATOR_QUEUES]",
)
@click.option(
    "--max-task-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_TASK_BYTES,
    show_default=True,
    envvar="TASKS_EMULATOR_MAX_TASK_BYTES",
    help="Largest accepted task, in bytes. [env: TASKS_EMULATOR_MAX_TASK_BYTES]",
)
def tasks_emulator(
    host: str,
    port: int,
    reservation_seconds: float,
    dispatch_threads: int,
    latency_ms: float,
    rest_port: int,
    issuer_port: int,
    db_path: str,
    config_path: str | None,
    queues_text: str,
    max_task_bytes: int,
) -> None:
    """Serve google.cloud.tasks.v2.CloudTasks over gRPC and REST, dispatching tasks over HTTP."""
    try:
        emulator = TasksEmulator(
            host=host,
            port=port,
            reservation_s=reservation_seconds,
            dispatch_threads=dispatch_threads,
            rpc_latency_s=latency_ms / 1000.0,
            max_task_bytes=max_task_bytes,
            db_path=None if db_path == MEMORY else db_path,
            queues=load_queues(config_path, queues_text),
            rest_port=None if rest_port == NO_REST else rest_port,
            issuer_port=issuer_port,
        )
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
    try:
        emulator.start()
        click.echo(
            f"Cloud Tasks emulator listening on {emulator.address} "
            f"(OIDC issuer {emulator.issuer.issuer_url})"
        )
        click.echo(f"export CLOUD_TASKS_EMULATOR_HOST={emulator.address}")
        if rest_port != NO_REST:
            click.echo(f"REST {emulator.rest_url} (gcloud api_endpoint_overrides/cloudtasks)")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
        click.echo("Stopping the Cloud Tasks emulator.", err=True)
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
