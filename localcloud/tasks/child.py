"""``localcloud tasks-emulator`` as a child process in its own process group.

For benchmarks and crash tests: the emulator then has an interpreter of its own
and can be killed like a real server (SIGKILL to its process group, by PID).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from localcloud.tasks.errors import EmulatorStartError

READY_PREFIX = "Cloud Tasks emulator listening on "
ISSUER_MARK = "(OIDC issuer "
STOP_GRACE_S = 15.0  # seconds between SIGTERM and SIGKILL in stop()
EMULATOR_CODE = "from localcloud.tasks.command import tasks_emulator; tasks_emulator()"


class EmulatorChild:
    """The emulator command started with ``args`` and extra ``env``, on a free gRPC port.

    ``client`` is an official CloudTasksClient on an insecure channel to it;
    ``issuer_url`` is the URL of the OIDC issuer signing its tasks' tokens.
    """

    def __init__(self, args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EMULATOR_CODE, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(READY_PREFIX):
            self.kill()
            raise EmulatorStartError(f"The emulator did not start; it printed {line!r}.")
        self.address = line[len(READY_PREFIX) :].split()[0]
        self.issuer_url = line.rsplit(ISSUER_MARK, 1)[-1].strip().rstrip(")")
        self.channel = grpc.insecure_channel(self.address)
        self.client = tasks_v2.CloudTasksClient(
            transport=CloudTasksGrpcTransport(channel=self.channel)
        )

    def __enter__(self) -> EmulatorChild:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would."""
        if hasattr(self, "channel"):
            self.channel.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_GRACE_S)

    def stop(self) -> None:
        """SIGTERM the emulator; SIGKILL its process group if it has not exited in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_GRACE_S)
        self.kill()
