"""The official Firestore emulator (``gcloud emulators firestore start``) as a child.

It runs in its own process group on a free loopback port and is stopped as a
group, so its Java child never outlives it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from localcloud.errors import EmulatorMissingError, ProcessStartError
from localcloud.processes import ManagedProcess, free_port, http_ok

INSTALL_HINT = (
    "The Firestore emulator is not installed. Install the Google Cloud CLI with its "
    "Firestore emulator and a Java runtime, for example on Debian/Ubuntu:\n"
    "  sudo apt-get install google-cloud-cli google-cloud-cli-firestore-emulator "
    "default-jre-headless\n"
    "or, with a gcloud installed from Google's archive:\n"
    "  gcloud components install cloud-firestore-emulator\n"
    "Then check with: gcloud emulators firestore start --help"
)
# The emulator is a JVM that serves short local runs (tests, the demo, benchmarks):
# compiling with the quick C1 compiler only, instead of C1 then C2, halves its CPU
# time per request over the first minutes, which is all such a run lasts.
JAVA_OPTIONS_VARIABLE = "FIRESTORE_EMULATOR_JAVA_OPTIONS"
DEFAULT_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"
_MISSING_MARKERS = ("not installed", "component", "java: not found", "no java", "java is required")


def _java_environment() -> dict[str, str]:
    """Return the environment with the emulator's JVM options added to ``JAVA_TOOL_OPTIONS``."""
    extra = os.environ.get(JAVA_OPTIONS_VARIABLE, DEFAULT_JAVA_OPTIONS).strip()
    mine = os.environ.get("JAVA_TOOL_OPTIONS", "").strip()
    return {**os.environ, "JAVA_TOOL_OPTIONS": f"{extra} {mine}".strip()}


class FirestoreEmulator:
    """Start and stop the official Firestore emulator; ``host_port`` is where it listens."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        gcloud: str = "gcloud",
        log_dir: Path | None = None,
        startup_timeout_s: float = 90.0,
    ) -> None:
        """Describe the emulator; ``port`` 0 picks a free one when started."""
        self.host = host
        self.port = port
        self.gcloud = gcloud
        self.log_dir = log_dir
        self.startup_timeout_s = startup_timeout_s
        self._process: ManagedProcess | None = None
        self._own_log_dir: Path | None = None

    @property
    def host_port(self) -> str:
        """``host:port``, the value for FIRESTORE_EMULATOR_HOST."""
        return f"{self.host}:{self.port}"

    @property
    def log_folder(self) -> Path:
        """The folder its ``firestore.log`` is written to; raises RuntimeError before start()."""
        folder = self.log_dir or self._own_log_dir
        if folder is None:
            raise RuntimeError("the emulator has not been started: it has no log folder yet")
        return folder

    def start(self) -> str:
        """Start the emulator and wait until it answers; return ``host:port``."""
        gcloud = shutil.which(self.gcloud)
        if gcloud is None:
            raise EmulatorMissingError(f"'{self.gcloud}' is not on PATH.\n{INSTALL_HINT}")
        self.port = self.port or free_port(self.host)
        if self.log_dir is None:  # a folder of its own, removed again by stop()
            self._own_log_dir = Path(tempfile.mkdtemp(prefix="firestore-emulator-"))
        argv = [
            gcloud,
            "emulators",
            "firestore",
            "start",
            f"--host-port={self.host_port}",
            "--quiet",
        ]
        self._process = ManagedProcess(
            "Firestore emulator", argv, self.log_folder / "firestore.log", _java_environment()
        )
        self._process.start()
        try:
            self._process.wait_until(
                lambda: http_ok(f"http://{self.host_port}/"), self.startup_timeout_s
            )
        except ProcessStartError as exc:
            tail = self._process.log_tail().lower()
            self._own_log_dir = None  # the message points at the log: keep it
            self.stop()
            if any(marker in tail for marker in _MISSING_MARKERS):
                raise EmulatorMissingError(f"{exc}\n\n{INSTALL_HINT}") from None
            raise
        return self.host_port

    def stop(self) -> None:
        """Stop the emulator's whole process group (and remove the log folder it made)."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._own_log_dir is not None:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)
            self._own_log_dir = None

    def __enter__(self) -> FirestoreEmulator:
        """Start on entering a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop on leaving the block, whatever happened."""
        self.stop()


@contextlib.contextmanager
def emulator_host() -> Iterator[str]:
    """Yield ``FIRESTORE_EMULATOR_HOST``: the one already set, or a started emulator's.

    An emulator started here is set in the environment for the block, then
    stopped. Raises a ``LocalCloudError`` when it cannot start.
    """
    existing = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if existing:
        yield existing
        return
    emulator = FirestoreEmulator()
    emulator.start()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
    try:
        yield emulator.host_port
    finally:
        del os.environ["FIRESTORE_EMULATOR_HOST"]
        emulator.stop()
