"""The whole local stack: Firestore emulator, Cloud Tasks emulator, worker and fanout.

Each part listens on a free loopback port. The services run under gunicorn as
child processes in their own process groups and are reached only over HTTP; the
local cloud never imports them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from localcloud.firestore_emulator import FirestoreEmulator
from localcloud.processes import ManagedProcess, free_port, http_ok
from localcloud.tasks.server import TasksEmulator
from localcloud.warehouse import WarehouseReceiver
from orders.clients import tasks_client
from orders.settings import CloudSettings

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
QUEUE_MAX_ATTEMPTS = 100
GUNICORN_TIMEOUT_S = 120  # longer than the tasks' dispatch deadline (CloudSettings, 60 s)
SERVICE_START_TIMEOUT_S = 60.0
SCHEDULER_EMAIL = "scheduler-invoker@order-fanout-demo.iam.gserviceaccount.com"


@dataclass(frozen=True)
class StackOptions:
    """How to run the stack: project, queue group size, queue limits and workers.

    ``queues`` is the size of the queue group (1: the single queue ``queue``);
    the rate limits (dispatches per second) apply to each queue of the group.
    """

    project: str = field(default_factory=lambda: f"order-fanout-demo-{uuid.uuid4().hex[:8]}")
    location: str = "us-central1"
    queue: str = "order-actions"
    queues: int = 1
    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 100
    gunicorn_workers: int = 2
    gunicorn_threads: int = 16


class LocalStack:
    """Starts every part on free ports and stops them all, also on failure."""

    def __init__(self, options: StackOptions) -> None:
        """Describe the stack; :meth:`start` runs it. Logs go to a fresh temporary folder."""
        self.options = options
        self.log_dir = Path(tempfile.mkdtemp(prefix="order-fanout-"))
        # An emulator the user already runs (FIRESTORE_EMULATOR_HOST) is used, not started.
        self.external_firestore = os.environ.get("FIRESTORE_EMULATOR_HOST", "")
        self.firestore = FirestoreEmulator(log_dir=self.log_dir)
        self.tasks = TasksEmulator()
        self.warehouse = WarehouseReceiver()
        self.worker_url = ""
        self.fanout_url = ""
        self._services: list[ManagedProcess] = []

    @property
    def firestore_host(self) -> str:
        """``host:port`` of the Firestore emulator in use."""
        return self.external_firestore or self.firestore.host_port

    @property
    def cloud(self) -> CloudSettings:
        """The settings both services are started with."""
        return CloudSettings(
            project=self.options.project,
            location=self.options.location,
            queue=self.options.queue,
            worker_url=self.worker_url,
            tasks_emulator_host=self.tasks_address,
            queue_count=self.options.queues,
        )

    @property
    def tasks_address(self) -> str:
        """``host:port`` of the Cloud Tasks emulator in use."""
        return self.tasks.address

    def scheduler_token(self, audience: str) -> str:
        """Return an OIDC token for the Scheduler's service account, as Cloud Scheduler sends."""
        return self.tasks.issuer.mint(audience=audience, email=SCHEDULER_EMAIL)

    def trusted_issuers(self) -> tuple[str, str]:
        """Return the services' ``AUTH_ISSUERS`` and ``AUTH_CERTS_URL``: the local issuer's."""
        return self.tasks.issuer.issuer_url, self.tasks.issuer.certs_url

    def start(self) -> None:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            if not self.external_firestore:
                self.firestore.start()
            self.tasks.start()
            self.warehouse.start()
            self.worker_url = f"http://127.0.0.1:{free_port()}"
            self._create_queue()
            self.worker_url = self._serve("worker", self.worker_url, self.worker_env())
            fanout_url = f"http://127.0.0.1:{free_port()}"
            self.fanout_url = self._serve("fanout", fanout_url, self.fanout_env(fanout_url))
        except BaseException:
            self.stop()
            if not any(self.log_dir.iterdir()):  # nothing had started: no logs to keep
                self.log_dir.rmdir()
            raise

    def stop(self) -> None:
        """Stop the services, then the emulators (each process group as a whole).

        A second Ctrl-C (or SIGTERM, SIGHUP) while stopping is ignored, so that
        every part is stopped even when the user is impatient.
        """
        with _signals_ignored():
            with contextlib.ExitStack() as stops:  # each stop runs even if one before it fails
                stops.callback(self.firestore.stop)
                stops.callback(self.tasks.stop)
                stops.callback(self.warehouse.stop)
                for service in self._services:
                    stops.callback(service.stop)
            self._services.clear()

    def remove_logs(self) -> None:
        """Delete the log folder (after a successful run)."""
        shutil.rmtree(self.log_dir, ignore_errors=True)

    def fanout_env(self, fanout_url: str) -> dict[str, str]:
        """Return what only the fanout reads: its own URL and who may call it."""
        return {"FANOUT_URL": fanout_url, "SCHEDULER_INVOKER_EMAIL": SCHEDULER_EMAIL}

    def service_env(self) -> dict[str, str]:
        """Return the environment both services run with.

        Callers' tokens come from the local issuer: only its issuer and certs URL
        differ from production.
        """
        cloud = self.cloud
        issuers, certs_url = self.trusted_issuers()
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "GOOGLE_CLOUD_PROJECT": cloud.project,
            "TASKS_LOCATION": cloud.location,
            "TASKS_QUEUE": cloud.queue,
            "TASKS_QUEUE_COUNT": str(cloud.queue_count),
            "WORKER_URL": cloud.worker_url,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "CLOUD_TASKS_EMULATOR_HOST": cloud.tasks_emulator_host,
            "AUTH_ISSUERS": issuers,
            "AUTH_CERTS_URL": certs_url,
        }

    def worker_env(self) -> dict[str, str]:
        """Return the worker's own settings.

        It verifies the tokens the Cloud Tasks emulator signs, posts to the local
        warehouse and knows the queue's ``max_attempts``.
        """
        invoker = CloudSettings.from_env(self.service_env()).invoker_email  # as fanout derives it
        return {
            "AUTH_AUDIENCE": self.worker_url,
            "AUTH_ALLOWED_EMAILS": invoker,
            "WAREHOUSE_URL": self.warehouse.url,
            "TASKS_MAX_ATTEMPTS": str(QUEUE_MAX_ATTEMPTS),
        }

    def _serve(self, name: str, base_url: str, env: dict[str, str] | None = None) -> str:
        """Run ``{name}.app:create_app()`` under gunicorn at ``base_url``; return the URL."""
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", base_url.removeprefix("http://"),
            "--config", "python:orders.serving",
            "--timeout", str(GUNICORN_TIMEOUT_S),
            "--graceful-timeout", "5",
            f"{name}.app:create_app()",
        ]  # fmt: skip
        gunicorn = {
            "GUNICORN_WORKERS": str(self.options.gunicorn_workers),
            "GUNICORN_THREADS": str(self.options.gunicorn_threads),
        }
        process = ManagedProcess(
            name,
            argv,
            self.log_dir / f"{name}.log",
            {**self.service_env(), **gunicorn, **(env or {})},
        )
        self._services.append(process)
        process.start()
        process.wait_until(lambda: http_ok(f"{base_url}/healthz"), SERVICE_START_TIMEOUT_S)
        return base_url

    def _create_queue(self) -> None:
        """Create the queues the fanout enqueues into (the group), with the stack's limits."""
        cloud = self.cloud
        client = tasks_client(cloud)
        for queue_id in cloud.queue_ids:
            client.create_queue(
                parent=f"projects/{cloud.project}/locations/{cloud.location}",
                queue=self._queue(cloud.queue_path_of(queue_id)),
            )

    def _queue(self, name: str) -> tasks_v2.Queue:
        """Return the queue ``name`` with the stack's rate limits and retries."""
        return tasks_v2.Queue(
            name=name,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=self.options.max_dispatches_per_second,
                max_concurrent_dispatches=self.options.max_concurrent_dispatches,
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=QUEUE_MAX_ATTEMPTS,
                min_backoff=duration_pb2.Duration(nanos=100_000_000),
                max_backoff=duration_pb2.Duration(seconds=10),
            ),
        )


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
