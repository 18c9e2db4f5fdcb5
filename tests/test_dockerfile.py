"""The Dockerfile, proven without a Docker engine.

The test parses the Dockerfile, runs its RUN steps the way the build would (the
wheel stage in a copy of the source, the final stage in an ``app`` folder holding
what its COPY lines bring, with a fresh virtual environment in place of
``/opt/venv``), then starts each service with the image's exact CMD and calls
its health endpoint.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from localcloud.processes import ManagedProcess, free_port, http_ok
from orders import serving

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_RUN = ("python -m venv /opt/venv", "useradd ")  # done by the test, or not needed


@dataclass
class Stage:
    """One build stage: its base, name and instructions in order."""

    base: str
    name: str = ""
    steps: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Split the Dockerfile into stages of (instruction, argument) pairs."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continued lines
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        if instruction.upper() == "FROM":
            base, _, name = argument.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip()))
        else:
            stages[-1].steps.append((instruction.upper(), argument.strip()))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction, argument in stage.steps:
        if instruction == "ENV":
            for pair in shlex.split(argument):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


STAGES = parse_dockerfile(ROOT / "Dockerfile")


def test_the_image_is_pinned_slim_non_root_and_serves_on_port() -> None:
    base, wheel, final = STAGES
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.base)
    assert wheel.base == final.base == "base"
    users = [argument for instruction, argument in final.steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = dict(final.steps)["CMD"]
    assert '--bind "${BIND_HOST}:${PORT}"' in cmd and '"${SERVICE}.app:create_app()"' in cmd
    assert "--config python:orders.serving" in cmd and "--timeout" not in cmd
    assert serving.timeout > 180  # above the dispatch deadline (60 s) and the attempt deadline
    assert serving.threads < serving.worker_connections <= 2 * serving.threads
    # Dependencies are installed before the code is copied in.
    order = [argument for instruction, argument in final.steps if instruction in ("RUN", "COPY")]
    deps = next(i for i, a in enumerate(order) if "pip install -r requirements.txt" in a)
    code = next(i for i, a in enumerate(order) if a.startswith("--from=wheel"))
    assert deps < code
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def run_steps(stage: Stage, workdir: Path, env: dict[str, str]) -> None:
    for instruction, argument in stage.steps:
        if instruction != "RUN" or argument.startswith(SKIPPED_RUN):
            continue
        done = subprocess.run(
            ["sh", "-c", argument], cwd=workdir, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"RUN {argument}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


def copy_sources(stage: Stage, destination: Path, sources: Path) -> None:
    for instruction, argument in stage.steps:
        if instruction != "COPY" or argument.startswith("--from="):
            continue
        *items, target = argument.split()
        for item in items:
            source = sources / item.rstrip("/")
            place = destination if target == "./" else destination / target.rstrip("/")
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(source, place, ignore=ignore, dirs_exist_ok=True)
            else:
                place.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, place / source.name)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build what the image holds: a virtual environment with the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("image")
    venv = root / "opt-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    base, wheel, final = STAGES
    env = {
        **os.environ,
        **env_of(base),
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
    }
    env.pop("PIP_NO_CACHE_DIR", None)  # the local pip cache keeps the test quick
    src, app = root / "src", root / "app"
    copy_sources(wheel, src, ROOT)
    run_steps(wheel, src, env)
    copy_sources(final, app, ROOT)
    shutil.copytree(src / "dist", app / "dist")  # COPY --from=wheel /src/dist/ dist/
    run_steps(final, app, env)
    assert not (app / "dist").exists()
    return venv


@pytest.mark.parametrize("service", ["worker", "fanout", "console"])
def test_each_service_starts_with_the_images_command(
    image: Path, tmp_path: Path, service: str
) -> None:
    final = STAGES[-1]
    port = free_port()
    env = {
        "PATH": f"{image / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        **env_of(final),
        "SERVICE": service,
        "BIND_HOST": "127.0.0.1",
        "PORT": str(port),
        "GOOGLE_CLOUD_PROJECT": "image-test",
        "FANOUT_URL": f"http://127.0.0.1:{port}",
        "WORKER_URL": "http://127.0.0.1:9",
        # Without Google credentials here, the clients are pointed at (unused) emulators.
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9",
    }
    cmd = dict(final.steps)["CMD"]
    process = ManagedProcess(service, ["sh", "-c", cmd], tmp_path / "service.log", env)
    process.start()
    try:
        process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60.0)
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert health == {"status": "ok", "service": service}
    finally:
        process.stop()
