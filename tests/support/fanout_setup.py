"""Helpers for the fanout's tests: a queue in the tasks emulator, a served fanout app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from fanout.app import create_app
from fanout.config import FanoutConfig
from localcloud.processes import free_port
from localcloud.tasks.server import TasksEmulator
from orders.auth import AuthSettings
from orders.clients import tasks_client
from orders.settings import CloudSettings
from tests.support.servers import ServerThread

SCHEDULER = "scheduler@test.iam.gserviceaccount.com"


def make_cloud(project: str, emulator: TasksEmulator, worker_url: str) -> CloudSettings:
    """Return settings for ``project`` with its queue created in ``emulator``."""
    cloud = CloudSettings(
        project=project, worker_url=worker_url, tasks_emulator_host=emulator.address
    )
    tasks_client(cloud).create_queue(
        parent=f"projects/{project}/locations/{cloud.location}",
        queue=tasks_v2.Queue(
            name=cloud.queue_path,
            retry_config=tasks_v2.RetryConfig(
                max_attempts=20,
                min_backoff=duration_pb2.Duration(nanos=100_000_000),
                max_backoff=duration_pb2.Duration(seconds=1),
            ),
        ),
    )
    return cloud


def fanout_auth(emulator: TasksEmulator, audience: str, *emails: str) -> AuthSettings:
    """Trust the emulator's issuer for ``audience``; allow the scheduler and ``emails``."""
    return AuthSettings(
        audience=audience,
        allowed_emails=frozenset((SCHEDULER, *emails)),
        issuers=(emulator.issuer.issuer_url,),
        certs_url=emulator.issuer.certs_url,
    )


@contextmanager
def served_fanout(config: FanoutConfig, emulator: TasksEmulator) -> Iterator[ServerThread]:
    """Serve the fanout app at its own ``FANOUT_URL``, verifying callers like production."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = replace(config, fanout_url=url)
    auth = fanout_auth(emulator, url, config.cloud.invoker_email)
    with ServerThread(create_app(config, auth), port=port) as server:
        yield server


def scheduler_headers(
    emulator: TasksEmulator, audience: str, email: str = SCHEDULER
) -> dict[str, str]:
    """Return the headers Cloud Scheduler sends, with a token for ``email``."""
    token = emulator.issuer.mint(audience=audience, email=email)
    return {"Authorization": f"Bearer {token}", "X-CloudScheduler": "true"}
