"""The local stack with its links breakable and its parts killable, for the chaos suite.

Differences from :class:`localcloud.stack.LocalStack`, each there so a fault can
be injected the way it happens in production:

* the Cloud Tasks emulator is a child process (``localcloud tasks-emulator``) on
  fixed ports and a SQLite file, so it can be SIGKILLed and restarted on its state;
* deliveries reach the worker through a :class:`FaultyHttpProxy` (the worker's
  public URL is the proxy's), so answers can be failed or dropped;
* both services reach Firestore through a :class:`StallingTcpProxy`.

The launcher mints the Scheduler's tokens with an issuer of its own that signs
with the emulator's key (put in the emulator's state before it first starts),
so the services trust one key, as with Google's.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localcloud.chaos.links import FaultyHttpProxy, StallingTcpProxy
from localcloud.oidc import LocalIssuer
from localcloud.processes import ManagedProcess, free_port, http_ok
from localcloud.stack import SCHEDULER_EMAIL, SERVICE_START_TIMEOUT_S, LocalStack, StackOptions
from localcloud.tasks.child import EMULATOR_CODE
from localcloud.tasks.issuer_state import KEY_SETTING
from localcloud.tasks.sqlite_task_store import SqliteTaskStore

EMULATOR_START_TIMEOUT_S = 30.0
FANOUT_LEASE_S = 10  # a killed fan-out's lease frees itself this fast, seconds


@dataclass
class TasksChild:
    """The tasks emulator as a restartable child process on fixed ports and one SQLite file."""

    process: ManagedProcess
    port: int
    issuer: LocalIssuer  # the launcher's issuer, same key: for minting and the certs URL
    issuer_port: int

    @property
    def address(self) -> str:
        """``host:port`` of its gRPC server."""
        return f"127.0.0.1:{self.port}"

    @property
    def issuer_url(self) -> str:
        """The ``iss`` of the tokens the emulator signs."""
        return f"http://127.0.0.1:{self.issuer_port}"

    def start(self) -> None:
        """Start it and wait until its gRPC port accepts connections."""
        self.process.start()
        self.process.wait_until(self._listening, EMULATOR_START_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL its process group."""
        self.process.kill()

    def stop(self) -> None:
        """Stop its process group."""
        self.process.stop()

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True


class ChaosStack(LocalStack):
    """A :class:`LocalStack` whose worker link, Firestore link and processes can fail."""

    def __init__(
        self, options: StackOptions, worker_proxy: bool = True, firestore_link: bool = True
    ) -> None:
        """Describe the stack; :meth:`start` runs it.

        ``worker_proxy`` and ``firestore_link`` put the breakable links in place;
        a scenario that does not break them goes without (each costs CPU on
        every delivery or Firestore call).
        """
        super().__init__(options)
        self._with_proxy = worker_proxy
        self._with_link = firestore_link
        self.launcher_issuer = LocalIssuer()
        db_path = self.log_dir / "tasks.sqlite3"
        _keep_key(db_path, self.launcher_issuer.private_key_pem)
        port, issuer_port = free_port(), free_port()
        argv = [
            sys.executable, "-c", EMULATOR_CODE,
            "--port", str(port), "--rest-port", "-1", "--db", str(db_path),
            "--issuer-port", str(issuer_port),
        ]  # fmt: skip
        process = ManagedProcess("tasks-emulator", argv, self.log_dir / "tasks.log")
        self.tasks_child = TasksChild(process, port, self.launcher_issuer, issuer_port)
        self.worker_proxy: FaultyHttpProxy | None = None
        self.firestore_link: StallingTcpProxy | None = None
        self.worker: ManagedProcess | None = None
        self.fanout: ManagedProcess | None = None
        self._worker_upstream = ""

    @property
    def tasks_address(self) -> str:
        """``host:port`` of the tasks emulator."""
        return self.tasks_child.address

    @property
    def firestore_host(self) -> str:
        """Where the services reach Firestore: through the stallable link once it exists."""
        if self.firestore_link is not None:
            return self.firestore_link.address
        return self.direct_firestore_host

    @property
    def direct_firestore_host(self) -> str:
        """``host:port`` of the Firestore emulator itself, past the link."""
        return super().firestore_host

    def start(self) -> None:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            if not self.external_firestore:
                self.firestore.start()
            if self._with_link:
                self.firestore_link = StallingTcpProxy(self.direct_firestore_host)
            self.launcher_issuer.start()
            self.tasks_child.start()
            self.warehouse.start()
            self._worker_upstream = f"http://127.0.0.1:{free_port()}"
            self.worker_url = self._worker_upstream
            if self._with_proxy:
                self.worker_proxy = FaultyHttpProxy(self._worker_upstream).start()
                self.worker_url = self.worker_proxy.url
            self._create_queue()
            self.worker = self._service("worker", self._worker_upstream, self.worker_env())
            fanout_url = f"http://127.0.0.1:{free_port()}"
            self.fanout = self._service("fanout", fanout_url, self.fanout_env(fanout_url))
            self.fanout_url = fanout_url
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the services and emulators, then the links and the launcher's issuer."""
        try:
            super().stop()
        finally:
            self.tasks_child.stop()
            self.launcher_issuer.stop()
            if self.worker_proxy is not None:
                self.worker_proxy.stop()
            if self.firestore_link is not None:
                self.firestore_link.cut()

    def scheduler_token(self, audience: str) -> str:
        """Return the Scheduler's token, signed by the launcher with the emulator's key."""
        return self.launcher_issuer.mint(audience=audience, email=SCHEDULER_EMAIL)

    def trusted_issuers(self) -> tuple[str, str]:
        """Trust the emulator's issuer and the launcher's: one key, served by the launcher."""
        issuers = f"{self.tasks_child.issuer_url},{self.launcher_issuer.issuer_url}"
        return issuers, self.launcher_issuer.certs_url

    def fanout_env(self, fanout_url: str) -> dict[str, str]:
        """Return the fanout's own settings, with a short lease so a killed run frees it soon."""
        return {**super().fanout_env(fanout_url), "FANOUT_LEASE_SECONDS": str(FANOUT_LEASE_S)}

    def restart(self, process: ManagedProcess, url: str, after_s: float = 0.0) -> None:
        """Start a killed service again after ``after_s`` seconds and wait until it serves."""
        time.sleep(after_s)
        process.start()
        process.wait_until(lambda: http_ok(f"{url}/healthz"), SERVICE_START_TIMEOUT_S)

    @property
    def worker_upstream(self) -> str:
        """The worker's own address behind the proxy."""
        return self._worker_upstream

    def _service(self, name: str, base_url: str, env: dict[str, str]) -> ManagedProcess:
        self._serve(name, base_url, env)
        return self._services[-1]


def _keep_key(db_path: Path, key_pem: bytes) -> None:
    """Put the signing key into a new emulator state file before the emulator first starts."""
    store = SqliteTaskStore(db_path)
    try:
        store.put_setting(KEY_SETTING, key_pem)
    finally:
        store.close()
