"""The image, built from the Dockerfile by buildah and run here.

No registry serves base images to this machine, so the Dockerfile's base is
stood in for by Debian bookworm with its own Python 3.11, made by debootstrap and
tagged with the base's name. buildah builds the Dockerfile unchanged against it
(chroot isolation, on this machine's network, so pip reaches PyPI), and each
service is started with the image's own command and user and asked for /healthz.

The stand-in and buildah's layer cache are kept in ~/.cache/order-fanout/image
(or $XDG_CACHE_HOME): only the first run pays for debootstrap and for the
dependency layer. Needs root, buildah and debootstrap (``make test`` installs the
two when run as root): without them the image tests skip, and in CI they fail.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from localcloud.processes import ManagedProcess, free_port, http_ok
from orders import serving

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BASE = re.search(r"^FROM (\S+) AS base$", DOCKERFILE, re.MULTILINE).group(1)  # type: ignore[union-attr]
IMAGE = "localhost/order-fanout:test"
INSTALL = "apt-get install buildah debootstrap"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "order-fanout" / "image"
CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
# The stand-in: the official image has `python` in /usr/local/bin; Debian has python3.11.
# It trusts the CA bundle this machine trusts, so pip in the build reaches PyPI as pip here does.
DEBOOTSTRAP = ["--variant=minbase", "--include=python3.11,python3-venv", "bookworm"]
PIP_CONF = "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
STAND_IN_LABEL = "order-fanout.stand-in"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the image tests here, or fail them in CI."""
    message = f"the image cannot be built here: {reason}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Buildah:
    """buildah with its storage in the cache folder and ulimits left as they are."""

    cache: Path

    def argv(self, *args: str) -> list[str]:
        run_root = Path(tempfile.gettempdir()) / "order-fanout-buildah"
        storage = ["--root", str(self.cache / "storage"), "--runroot", str(run_root)]
        return ["buildah", *storage, "--storage-driver", "overlay", *args]

    def prepare(self) -> None:
        """Make the cache folder and a containers.conf that sets no ulimits."""
        self.cache.mkdir(parents=True, exist_ok=True)
        # The sandbox refuses the rlimits buildah sets by default.
        (self.cache / "containers.conf").write_text("[containers]\ndefault_ulimits = []\n")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.cache / "containers.conf")}

    def __call__(self, *args: str, timeout_s: float = 120.0) -> str:
        done = subprocess.run(
            self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout_s
        )
        assert done.returncode == 0, f"buildah {' '.join(args)}:\n{done.stderr[-3000:]}"
        return done.stdout.strip()

    def image_config(self, name: str) -> dict[str, Any] | None:
        """The OCI config of the image ``name``, or None when there is no such image."""
        done = subprocess.run(
            self.argv("inspect", "--type", "image", name),
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return None
        config: dict[str, Any] = json.loads(done.stdout)["OCIv1"]["config"]
        return config


def stand_in_key() -> str:
    """What the stand-in is made from; a change makes a new one."""
    recipe = json.dumps([BASE, DEBOOTSTRAP, PIP_CONF]).encode() + CA_BUNDLE.read_bytes()
    return hashlib.sha256(recipe).hexdigest()[:16]


def make_stand_in(buildah: Buildah, key: str) -> None:
    """Make Debian bookworm with Python 3.11 and tag it as the Dockerfile's base."""
    container = buildah("from", "scratch")
    try:
        rootfs = Path(buildah("mount", container))
        packages = CACHE / "debs"  # kept, so a new stand-in downloads nothing again
        packages.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["debootstrap", f"--cache-dir={packages}", *DEBOOTSTRAP, str(rootfs)],
            capture_output=True,
            text=True,
            timeout=1500,
        )
        assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-3000:]}{done.stderr}"
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3.11")
        shutil.copyfile(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text(PIP_CONF)
        buildah("umount", container)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        settings = ["--env", f"PATH={path}", "--env", "LANG=C.UTF-8", "--cmd", "python3"]
        buildah("config", *settings, "--label", f"{STAND_IN_LABEL}={key}", container)
        buildah("commit", "--quiet", container, BASE, timeout_s=600)
    finally:
        buildah("rm", container)


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[Buildah, dict[str, Any]]]:
    """Build the Dockerfile against the stand-in base; return buildah and the image's config."""
    if shutil.which("buildah") is None:
        unavailable(f"buildah is not installed: {INSTALL}")
    if os.geteuid() != 0:
        unavailable("buildah's chroot isolation and debootstrap need root")
    buildah = Buildah(CACHE)
    buildah.prepare()
    with open(CACHE / "lock", "w") as lock:  # one build at a time in the shared cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = stand_in_key()
        stand_in = buildah.image_config(BASE)
        if stand_in is None or (stand_in.get("Labels") or {}).get(STAND_IN_LABEL) != key:
            if shutil.which("debootstrap") is None:
                unavailable(f"debootstrap is not installed: {INSTALL}")
            make_stand_in(buildah, key)
        buildah(
            *("bud", "--isolation", "chroot", "--pull=never", "--layers", "--quiet"),
            *("--tag", IMAGE, str(ROOT)),
            timeout_s=1200,
        )
        buildah("rmi", "--prune")  # earlier builds' images, no longer tagged
        config = buildah.image_config(IMAGE)
    assert config is not None
    yield buildah, config


def gunicorn_users(group: int) -> list[int]:
    """The real uid of each gunicorn process (master and workers) in the process group."""
    uids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        in_group = int(stat.rpartition(")")[2].split()[2]) == group  # pgrp: after state, ppid
        runs_gunicorn = len(argv) > 1 and Path(argv[1]).name == "gunicorn"
        if in_group and runs_gunicorn and Path(argv[0]).name.startswith("python"):
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            uids.append(int(uid_line.split()[1]))
    return uids


@pytest.mark.timeout(1800)  # the first run makes the stand-in base (minutes of downloads)
@pytest.mark.parametrize("service", ["worker", "fanout", "console"])
def test_each_service_starts_from_the_image_as_its_user(
    image: tuple[Buildah, dict[str, Any]], tmp_path: Path, service: str
) -> None:
    buildah, config = image
    port = free_port()
    settings = {
        "SERVICE": service,
        "BIND_HOST": "127.0.0.1",  # chroot isolation shares this machine's network
        "PORT": str(port),
        "GOOGLE_CLOUD_PROJECT": "image-test",
        "FANOUT_URL": f"http://127.0.0.1:{port}",
        "WORKER_URL": "http://127.0.0.1:9",
        # Without Google credentials here, the clients are pointed at (unused) emulators.
        "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9",
        "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9",
    }
    env_flags = [flag for key, value in settings.items() for flag in ("-e", f"{key}={value}")]
    command = [*(config.get("Entrypoint") or []), *config["Cmd"]]
    container = buildah("from", "--pull=never", IMAGE)
    run = buildah.argv("run", "--isolation", "chroot", *env_flags, container, "--", *command)
    process = ManagedProcess(service, run, tmp_path / "service.log", buildah.env)
    process.start()
    try:
        process.wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 120.0)
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert health == {"status": "ok", "service": service}
        assert process.pid is not None
        assert config["User"] not in ("", "0", "root")
        uids = gunicorn_users(process.pid)
        assert len(uids) > 1 and set(uids) == {int(config["User"])}  # master and workers
    finally:
        process.stop()
        buildah("rm", container)


def test_the_dockerfile_pins_its_base_and_installs_the_lock_before_the_code() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", BASE)
    steps = re.findall(r"^(?:RUN|COPY) .*$", DOCKERFILE, re.MULTILINE)
    lock = next(i for i, s in enumerate(steps) if "--require-hashes -r requirements.lock" in s)
    code = next(i for i, s in enumerate(steps) if s.startswith("COPY --from=wheel"))
    assert lock < code  # editing the code does not reinstall the dependencies
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_the_images_command_takes_gunicorns_settings_from_orders_serving() -> None:
    cmd = re.search(r"^CMD (.*)$", DOCKERFILE, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert '--bind "${BIND_HOST}:${PORT}"' in cmd and '"${SERVICE}.app:create_app()"' in cmd
    assert "--config python:orders.serving" in cmd and "--timeout" not in cmd
    assert serving.timeout > 180  # above the dispatch deadline (60 s) and the attempt deadline
    assert serving.threads < serving.worker_connections <= 2 * serving.threads
