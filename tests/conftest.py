"""Fixtures that start real servers and clean up after themselves.

The official Firestore emulator runs once per session in its own process group.
Each test gets its own Firestore project id, so tests never see each other's data.
Outside CI a missing emulator skips the tests that need it; in CI (CI=true) it
fails them. Under pytest-xdist (``-n``) the controlling process starts the one
emulator before the workers, which inherit FIRESTORE_EMULATOR_HOST: one JVM for
the run, not one per worker.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from localcloud.errors import LocalCloudError
from localcloud.firestore_emulator import emulator_host
from localcloud.tasks.server import TasksEmulator
from orders.logs import JsonFormatter
from tests.support.gcloud import Gcloud
from tests.support.hypothesis_profiles import load_profile
from tests.support.receiver import Receiver

load_profile()  # HYPOTHESIS_PROFILE=deep for many more examples (see the README)

_SHARED_EMULATOR = pytest.StashKey[contextlib.ExitStack]()


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, start the Firestore emulator once, in the controller, for every worker."""
    workers = getattr(config.option, "numprocesses", None)
    if not workers or hasattr(config, "workerinput"):
        return  # no workers, or this is one of them
    stack = contextlib.ExitStack()
    config.stash[_SHARED_EMULATOR] = stack
    with contextlib.suppress(LocalCloudError):  # each worker's fixture then reports why
        stack.enter_context(emulator_host())


# The files that take longest (most of it waiting: a JVM, gcloud, buildah, a browser,
# backoffs), slowest first. Under xdist each file runs whole on one worker
# (``--dist loadfile --no-loadscope-reorder``) and they are handed out first, so that
# no worker is left running one of them alone at the end.
SLOWEST_FILES = (
    "test_demo.py",
    "test_chaos.py",
    "test_image.py",
    "test_tasks_gcloud.py",
    "test_console_browser.py",
    "test_deploy.py",
    "test_scheduler.py",
    "conformance/test_dispatch.py",
    "test_fanout_interrupted.py",
    "test_console_up.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, put the slowest files first; each file's tests keep their order."""
    if not hasattr(config, "workerinput"):
        return

    def rank(item: pytest.Item) -> int:
        path = item.path.as_posix()
        slow = [i for i, name in enumerate(SLOWEST_FILES) if path.endswith(f"/tests/{name}")]
        return slow[0] if slow else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the others keep pytest's order


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the emulator ``pytest_configure`` started, if it did."""
    stack = config.stash.get(_SHARED_EMULATOR, None)
    if stack is not None:
        stack.close()


@pytest.fixture(scope="session", autouse=True)
def temporary_folders_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Put what the code under test leaves in the temporary folder under pytest's own.

    A demo that fails or is interrupted keeps its services' logs, on purpose; in
    tests those folders then go under pytest's base folder (which pytest prunes,
    keeping the last few runs), not in the machine's ``/tmp``. Child processes
    inherit ``TMPDIR``.
    """
    folder = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        patch.setattr(tempfile, "tempdir", str(folder))
        yield folder


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[str]:
    """Return FIRESTORE_EMULATOR_HOST for a running official emulator."""
    with contextlib.ExitStack() as stack:
        try:
            host = stack.enter_context(emulator_host())
        except LocalCloudError as exc:
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"the Firestore emulator could not start in CI: {exc}")
            pytest.skip(f"the Firestore emulator could not start: {exc}")
        yield host


@pytest.fixture
def tasks_emulator() -> Iterator[TasksEmulator]:
    """Return a running Cloud Tasks emulator (with its OIDC issuer), stopped after the test."""
    emulator = TasksEmulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Return a recording HTTP task target, closed after the test."""
    started = Receiver()
    yield started
    started.close()


@pytest.fixture
def project(firestore_emulator: str) -> str:
    """Return a Firestore project id of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def db(project: str) -> firestore.Client:
    """Return a Firestore client on this test's project, in the emulator."""
    return firestore.Client(project=project)


# One Cloud Tasks emulator and official client per test module, for modules
# that ask for ``emulator``, ``channel`` or ``client`` (a module may define its own).


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    """Return one Cloud Tasks emulator per test module."""
    with TasksEmulator() as started:
        yield started


@pytest.fixture(scope="module")
def channel(emulator: TasksEmulator) -> Iterator[grpc.Channel]:
    """Return a gRPC channel to the module's emulator."""
    opened = grpc.insecure_channel(emulator.address)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def client(channel: grpc.Channel) -> tasks_v2.CloudTasksClient:
    """Return the official Cloud Tasks client on the module's emulator."""
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Return the JSON log lines this test writes (root logger at INFO)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
def gcloud(tmp_path: Path) -> Iterator[tuple[Gcloud, TasksEmulator]]:
    """Return the real gcloud CLI aimed at a fresh emulator's REST surface, and the emulator."""
    binary = shutil.which("gcloud")
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("gcloud is not installed (apt-get install google-cloud-cli)")
        pytest.skip("gcloud is not installed (apt-get install google-cloud-cli)")
    with TasksEmulator(dispatch_threads=4) as emulator:
        yield Gcloud(binary, tmp_path / "gcloud", emulator.rest_url), emulator
