"""``localcloud tasks-emulator``: serve the Cloud Tasks emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from localcloud.tasks.dispatcher import DEFAULT_DISPATCH_THREADS
from localcloud.tasks.server import TasksEmulator
from localcloud.tasks.store import DEFAULT_RESERVATION_S

DEFAULT_PORT = 8123


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
def tasks_emulator(
    host: str, port: int, reservation_seconds: float, dispatch_threads: int, latency_ms: float
) -> None:
    """Serve google.cloud.tasks.v2.CloudTasks over gRPC, dispatching tasks over HTTP."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, request_stop)
    emulator = TasksEmulator(
        host=host,
        port=port,
        reservation_s=reservation_seconds,
        dispatch_threads=dispatch_threads,
        rpc_latency_s=latency_ms / 1000.0,
    )
    try:
        emulator.start()
        click.echo(
            f"Cloud Tasks emulator listening on {emulator.address} "
            f"(OIDC issuer {emulator.issuer.issuer_url})"
        )
        click.echo(f"export CLOUD_TASKS_EMULATOR_HOST={emulator.address}")
        while not stop.wait(1.0):
            pass
        click.echo("Stopping the Cloud Tasks emulator.", err=True)
    except Exception as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
