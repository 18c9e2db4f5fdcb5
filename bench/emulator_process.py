"""Start ``localcloud tasks-emulator`` as a subprocess for the emulator benchmarks.

The emulator runs in its own process (and process group) so the benchmark's
client does not share its interpreter lock; it is stopped by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

ROOT = Path(__file__).resolve().parent.parent
LOCATION = "projects/bench/locations/us-central1"


class EmulatorProcess:
    """The emulator on a free port with the SQLite file ``db`` (or ``:memory:``)."""

    def __init__(self, db: str, *extra: str) -> None:
        code = "from localcloud.tasks.command import tasks_emulator; tasks_emulator()"
        args = [sys.executable, "-c", code, "--port", "0", "--rest-port", "-1", "--db", db]
        self.proc = subprocess.Popen(
            [*args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("Cloud Tasks emulator listening on "):
            self.stop()
            raise RuntimeError(f"the emulator did not start: {line!r}")
        self.address = line.split()[5]
        self.channel = grpc.insecure_channel(self.address)
        self.client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=self.channel)
        )

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM the emulator; SIGKILL its process group if it does not exit."""
        if hasattr(self, "channel"):
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
