"""The embeddable Cloud Tasks emulator: gRPC server, store, dispatcher and OIDC issuer."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

import grpc

from localcloud.oidc import LocalIssuer
from localcloud.tasks.dispatcher import DEFAULT_DISPATCH_THREADS, STOP_TIMEOUT_S, Dispatcher
from localcloud.tasks.errors import EmulatorStartError, EmulatorStateError
from localcloud.tasks.issuer_state import ANY_PORT, start_kept_issuer
from localcloud.tasks.metric_service import MetricService
from localcloud.tasks.model import QueueConfig
from localcloud.tasks.rest import RestApi, RestServer
from localcloud.tasks.service import CloudTasksService
from localcloud.tasks.sqlite_task_store import MEMORY, SqliteTaskStore
from localcloud.tasks.task_conversion import DEFAULT_MAX_TASK_BYTES
from localcloud.tasks.task_store import DEFAULT_RESERVATION_S, TaskStore

DEFAULT_GRPC_THREADS = 32
MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # a full batch of 100 tasks of 1 MiB fits


class TasksEmulator:
    """A Cloud Tasks v2 emulator served over gRPC, embeddable in-process.

    The same port serves Cloud Monitoring's ``ListTimeSeries`` for the queues'
    ``task_attempt_count`` metric (:mod:`localcloud.tasks.metric_service`).

    ``port`` 0 binds a free port. ``issuer`` signs the tasks' OIDC tokens; when
    None the emulator starts (and stops) its own :class:`LocalIssuer`.
    ``reservation_s`` is how long, in seconds, a finished or deleted task's name
    stays reserved. ``dispatch_threads`` caps the HTTP threads per queue.
    ``max_task_bytes`` is the task size limit in bytes. ``store`` defaults to a
    :class:`SqliteTaskStore` in the file ``db_path``, or in memory (``:memory:``)
    without one. ``rpc_latency_s`` is a delay in seconds added to every gRPC
    call, to simulate network round-trips in benchmarks (0 = none). ``queues``
    are created, or updated to these settings, at start.
    ``rest_port`` serves the v2 REST surface beside gRPC (0 = a free port, None =
    no REST); its base URL is :attr:`rest_url`. An issuer of the emulator's own
    keeps its signing key, and its port, in the store
    (:mod:`localcloud.tasks.issuer_state`); ``issuer_port`` fixes that port
    (0 = the kept one when free, else any).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        issuer: LocalIssuer | None = None,
        reservation_s: float = DEFAULT_RESERVATION_S,
        dispatch_threads: int = DEFAULT_DISPATCH_THREADS,
        max_task_bytes: int = DEFAULT_MAX_TASK_BYTES,
        store: TaskStore | None = None,
        rpc_latency_s: float = 0.0,
        db_path: str | Path | None = None,
        queues: Sequence[QueueConfig] = (),
        rest_port: int | None = 0,
        issuer_port: int = ANY_PORT,
    ) -> None:
        if dispatch_threads < 1:
            raise ValueError(f"dispatch_threads must be at least 1, got {dispatch_threads}")
        if rpc_latency_s < 0:
            raise ValueError(f"rpc_latency_s must not be negative, got {rpc_latency_s}")
        self.rpc_latency_s = rpc_latency_s
        self.host = host
        self.port = port
        self.dispatch_threads = dispatch_threads
        self.max_task_bytes = max_task_bytes
        if store is None:
            store = SqliteTaskStore(MEMORY if db_path is None else db_path, reservation_s)
        self.store: TaskStore = store
        self.queues = list(queues)
        self.rest_port = rest_port
        self.issuer_port = issuer_port
        self._rest: RestServer | None = None
        self._issuer = issuer
        self._owns_issuer = issuer is None
        self._server: grpc.Server | None = None
        self._dispatcher: Dispatcher | None = None
        self._executor: futures.ThreadPoolExecutor | None = None

    # -- lifecycle --------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def address(self) -> str:
        """``host:port`` for ``grpc.insecure_channel`` / ``CLOUD_TASKS_EMULATOR_HOST``."""
        return f"{self._bind_host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST surface (for ``api_endpoint_overrides/cloudtasks``)."""
        if self._rest is None:
            raise EmulatorStateError("The REST surface is not being served.")
        return self._rest.url

    @property
    def _bind_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def issuer(self) -> LocalIssuer:
        """The OIDC issuer signing dispatch tokens (available after :meth:`start`)."""
        if self._issuer is None:
            raise EmulatorStateError("The emulator is not started: it has no OIDC issuer yet.")
        return self._issuer

    def start(self) -> int:
        """Start the issuer (if owned), the dispatch loops and the gRPC server; return the port."""
        if self._server is not None:
            return int(self.port)
        if self._issuer is None:
            try:
                self._issuer = start_kept_issuer(self.store, self.host, self.issuer_port)
            except OSError as exc:
                raise EmulatorStartError(
                    f"Cannot bind the OIDC issuer to {self.host}:{self.issuer_port}: {exc}"
                ) from exc
        self._issuer.start()
        issuer = self._issuer
        self.store.release_leases()
        dispatcher = Dispatcher(self.store, issuer.cached_token, self.dispatch_threads)
        service = CloudTasksService(
            self.store, dispatcher, self.max_task_bytes, rpc_latency_s=self.rpc_latency_s
        )
        executor = futures.ThreadPoolExecutor(
            max_workers=DEFAULT_GRPC_THREADS, thread_name_prefix="tasks-grpc"
        )
        server = grpc.server(
            executor,
            handlers=[
                *service.handlers(),
                *MetricService(dispatcher.attempts).handlers(self.rpc_latency_s),
            ],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        try:
            port = server.add_insecure_port(f"{self._bind_host}:{self.port}")
        except RuntimeError as exc:
            port = 0
            reason = str(exc)
        else:
            reason = "port in use or address not available"
        if port == 0:
            server.stop(None)
            executor.shutdown(wait=True)
            self._stop_issuer()
            raise EmulatorStartError(
                f"Cannot bind the Cloud Tasks emulator to {self.address}: {reason}"
            )
        self.port = int(port)
        if self.rest_port is not None:
            try:
                self._rest = RestServer(RestApi(service), self.host, self.rest_port)
            except OSError as exc:
                server.stop(None)
                executor.shutdown(wait=True)
                self._stop_issuer()
                raise EmulatorStartError(
                    f"Cannot bind the REST surface to {self.host}:{self.rest_port}: {exc}"
                ) from exc
            self.rest_port = self._rest.port
        for config in self.queues:
            service.queues.put_queue(config)
        dispatcher.start()
        server.start()
        if self._rest is not None:
            self._rest.start()
        self._server, self._dispatcher, self._executor = server, dispatcher, executor
        return self.port

    def stop(self, grace_s: float = 1.0, dispatch_timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop serving (``grace_s`` seconds for running RPCs), dispatching and the issuer.

        In-flight HTTP requests get ``dispatch_timeout_s`` seconds to finish.
        Idempotent.
        """
        server, dispatcher, executor = self._server, self._dispatcher, self._executor
        rest, self._rest = self._rest, None
        self._server = self._dispatcher = self._executor = None
        if rest is not None:
            rest.stop()
        if server is not None:
            server.stop(grace_s).wait()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if dispatcher is not None:
            dispatcher.stop(dispatch_timeout_s)
        self._stop_issuer()

    def _stop_issuer(self) -> None:
        if self._owns_issuer and self._issuer is not None:
            self._issuer.stop()
            self._issuer = None

    def __enter__(self) -> TasksEmulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- observability and test hooks --------------------------------------------

    def stats(self) -> dict[str, int]:
        """Return the emulator's counters.

        Keys: tasks_created, deduplicated (ALREADY_EXISTS answers), dispatches (HTTP
        attempts), retries (attempts with retry count > 0), succeeded, exhausted,
        deleted, in_flight (attempts being sent) and queued (tasks not yet done).
        """
        return self.store.counters()

    def reset_reservations(self) -> None:
        """Forget the reserved names of finished and deleted tasks (for tests)."""
        self.store.reset_reservations()
