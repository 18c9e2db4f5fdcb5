"""The console's production trigger path: its own identity from the metadata server.

Without ``CONSOLE_TRIGGER_AS`` the console calls ``google.oauth2.id_token.fetch_id_token``,
which on Cloud Run asks the metadata server for an ID token. Here a stand-in of
that server (tests/support/metadata_server.py) answers with tokens of the local
issuer, and the console runs unchanged in its own process, pointed at the
stand-in by google-auth's own variables (``GCE_METADATA_HOST`` is read when
google-auth is first imported, hence a fresh process). The fanout verifies the
token as in production (orders/auth) and runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from google.cloud import firestore

from fanout.config import FanoutConfig
from localcloud.tasks.server import TasksEmulator
from orders.schema import FANOUT_RUNS
from tests.support.fanout_setup import SCHEDULER, make_cloud, served_fanout
from tests.support.metadata_server import IDENTITY_PATH, MetadataServer
from tests.support.seeding import seed_orders

ROOT = Path(__file__).resolve().parent.parent

# The console as Cloud Run starts it (ConsoleConfig.from_env, no token source given):
# trigger a run from the page, then print the page once it shows how the call ended.
CONSOLE = """
import sys, time
from console.app import create_app
client = create_app().test_client()
answer = client.post("/runs")
if answer.status_code != 303:
    sys.exit(f"POST /runs answered {answer.status_code}: {answer.get_data(as_text=True)}")
deadline = time.monotonic() + 60
page = ""
while "last trigger" not in page and time.monotonic() < deadline:
    time.sleep(0.1)
    page = client.get("/runs").get_data(as_text=True)
print(page)
"""


@pytest.fixture
def metadata(tasks_emulator: TasksEmulator) -> Iterator[MetadataServer]:
    """The metadata server of a console running as Scheduler's account (the fanout allows it)."""
    with MetadataServer(tasks_emulator.issuer, SCHEDULER) as server:
        yield server


def _console_environ(extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GOOGLE_APPLICATION_CREDENTIALS", "CONSOLE_TRIGGER_AS")
        and not key.startswith("GCE_METADATA")
    }
    return {**env, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", **extra}


def test_the_console_triggers_a_run_with_its_identity_from_the_metadata_server(
    db: firestore.Client,
    project: str,
    firestore_emulator: str,
    tasks_emulator: TasksEmulator,
    metadata: MetadataServer,
) -> None:
    seed_orders(db, 3)
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    with served_fanout(FanoutConfig(cloud=cloud), tasks_emulator) as fanout:
        environ = _console_environ(
            {
                **metadata.environ,
                "GOOGLE_CLOUD_PROJECT": project,
                "FIRESTORE_EMULATOR_HOST": firestore_emulator,
                "CLOUD_TASKS_EMULATOR_HOST": tasks_emulator.address,
                "FANOUT_URL": fanout.url,
                "LOG_LEVEL": "WARNING",
            }
        )
        console = subprocess.run(
            [sys.executable, "-c", CONSOLE],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert console.returncode == 0, console.stderr
    assert "last trigger" in console.stdout and ": 200 " in console.stdout, console.stderr
    [run] = list(db.collection(FANOUT_RUNS).stream())
    assert run.get("state") == "finished" and run.get("trigger") == "http"
    identity = [urlsplit(p) for p in metadata.requests if p.startswith(IDENTITY_PATH)]
    assert [parse_qs(p.query)["audience"] for p in identity] == [[fanout.url]]


def test_the_stand_in_refuses_what_the_metadata_server_refuses(
    metadata: MetadataServer,
) -> None:
    assert metadata.answer(IDENTITY_PATH + "?audience=x", "")[0] == 403  # no Metadata-Flavor
    assert metadata.answer(IDENTITY_PATH + "?format=full", "Google")[0] == 400  # no audience
    status, _, token = metadata.answer(IDENTITY_PATH + "?audience=https://x", "Google")
    assert status == 200 and token.count(".") == 2
