"""A worker wired to test servers: the local issuer, a local warehouse, short leases.

``python -m tests.support.worker_setup SPEC_JSON`` serves such a worker in a child
process, so that a test can kill it in the middle of a delivery.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
from werkzeug.serving import make_server

from localcloud.oidc import LocalIssuer
from localcloud.tasks.server import TasksEmulator
from localcloud.warehouse import WarehouseReceiver
from orders.auth import AuthSettings
from orders.contract import TaskPayload
from orders.settings import CloudSettings
from tests.support.servers import ServerThread
from worker.app import create_app
from worker.config import WorkerConfig

QUEUE = "order-actions"
INVOKER = "tasks-invoker@test.iam.gserviceaccount.com"
AUDIENCE = "http://worker.test"
DEADLINE_S = 1.0
LEASE_S = 2.0  # seconds; the heartbeat renews it every third of that


def worker_config(
    project: str,
    issuer_url: str,
    certs_url: str,
    warehouse_url: str,
    lease_s: float = LEASE_S,
    **overrides: object,
) -> WorkerConfig:
    cloud = CloudSettings(
        project=project, queue=QUEUE, worker_url=AUDIENCE, dispatch_deadline_s=DEADLINE_S
    )
    auth = AuthSettings(AUDIENCE, frozenset({INVOKER}), (issuer_url,), certs_url)
    settings: dict[str, object] = {"delivery_timeout_s": 5.0, "rpc_timeout_s": 5.0, **overrides}
    return WorkerConfig(
        cloud=cloud,
        auth=auth,
        log_level="WARNING",
        lease_s=lease_s,
        warehouse_url=warehouse_url,
        **settings,  # type: ignore[arg-type]
    )


@dataclass
class Sender:
    """Delivers tasks to a worker the way Cloud Tasks does: headers and an OIDC token."""

    url: str
    issuer: LocalIssuer

    def headers(self, retry_count: int = 0, **overrides: str) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.issuer.cached_token(AUDIENCE, INVOKER)}",
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": QUEUE,
            "X-CloudTasks-TaskName": "task-1",
            "X-CloudTasks-TaskRetryCount": str(retry_count),
            "X-CloudTasks-TaskExecutionCount": str(retry_count),
        }
        headers.update(overrides)
        return {k: v for k, v in headers.items() if v != ""}

    def deliver(
        self, payload: TaskPayload, retry_count: int = 0, **overrides: str
    ) -> requests.Response:
        return self.post(payload.to_json(), self.headers(retry_count, **overrides))

    def post(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(f"{self.url}/tasks", data=body, headers=headers, timeout=60)


class _LaterApp:
    """A WSGI app set after its server is bound, so the app can know its own URL."""

    app: Callable[..., Any] | None = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@contextlib.contextmanager
def queue_worker(project: str, emulator: TasksEmulator) -> Iterator[ServerThread]:
    """Serve a worker that verifies the emulator's tokens (audience: its own URL)."""
    later = _LaterApp()
    with WarehouseReceiver() as warehouse, ServerThread(later) as server:
        issuer = emulator.issuer
        cloud = CloudSettings(project=project, worker_url=server.url)
        auth = AuthSettings(
            server.url, frozenset({cloud.invoker_email}), (issuer.issuer_url,), issuer.certs_url
        )
        config = WorkerConfig(
            cloud=cloud, auth=auth, log_level="WARNING", warehouse_url=warehouse.url
        )
        later.app = create_app(config)
        yield server


def main() -> None:
    spec = json.loads(sys.argv[1])
    port = spec.pop("port")
    server = make_server("127.0.0.1", port, create_app(worker_config(**spec)), threaded=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
