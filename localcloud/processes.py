"""Child processes in their own process groups, stopped as a group.

Wrappers such as gcloud leave their Java child running when only the wrapper is
killed, so every child starts a new session and :meth:`ManagedProcess.stop`
signals the whole group: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from localcloud.errors import ProcessStartError


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ManagedProcess:
    """A child process started in its own session, with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Describe the process; :meth:`start` runs it."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's PID (also its process group id), or None before start."""
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the child in a new session (so a new process group)."""
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def exited(self) -> bool:
        """Tell whether the child has exited."""
        return self._proc is not None and self._proc.poll() is not None

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the child's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll ``ready`` until true; raise ProcessStartError on exit or after ``timeout_s`` s."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.exited():
                raise ProcessStartError(
                    f"{self.name} exited during start-up; its output ({self.log_path}):\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"{self.name} was not ready after {timeout_s:.0f} s; its output "
                    f"({self.log_path}):\n" + self.log_tail()
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would, and reap the child."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for_group_exit(proc.pid, GROUP_EXIT_TIMEOUT_S)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``grace_s`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        # The leader may be gone while children of the group linger: always sweep.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        # SIGKILL is delivered, not done: a grandchild (gcloud's Java) may still hold
        # its port for a moment. Return only when the group has really gone.
        wait_for_group_exit(proc.pid, grace_s)


GROUP_EXIT_TIMEOUT_S = 10.0  # longest wait for a killed group's members to exit, seconds
_GROUP_POLL_S = 0.01  # how often that wait looks again, seconds


def proc_stat_fields(path: Path) -> list[str]:
    """Return the fields of a ``/proc`` stat file that follow the command (state, ppid, pgrp)."""
    stat = path.read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _has_exited(process: Path) -> bool:
    """Tell whether every thread of the process under ``/proc/PID`` has exited.

    The main thread of a multi-threaded process (Java) can show as a zombie while
    its other threads still run and hold its sockets: look at each thread.
    """
    try:
        threads = list((process / "task").iterdir())
        return all(proc_stat_fields(thread / "stat")[0] in "ZX" for thread in threads)
    except OSError:  # gone meanwhile
        return True


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that have not exited (zombies have, and are left out)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            pgrp = int(proc_stat_fields(entry / "stat")[2])
        except OSError:
            continue
        if pgrp == pgid and not _has_exited(entry):
            members.append(int(entry.name))
    return members


def wait_for_group_exit(pgid: int, timeout_s: float) -> None:
    """Wait until no live process is left in group ``pgid``, for at most ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while live_group_members(pgid) and time.monotonic() < deadline:
        time.sleep(_GROUP_POLL_S)


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Tell whether GET ``url`` answers 2xx right now."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


SIGNAL_POLL_S = 0.5  # how often a waiting main thread wakes to run signal handlers, seconds


def wait_for_stop(stop: threading.Event) -> None:
    """Block until ``stop`` is set, or until Ctrl-C or SIGTERM raise in this (main) thread.

    Waits in short slices: the kernel may deliver a signal to any thread, and a
    main thread blocked in one endless wait would then never run the handler.
    """
    while not stop.wait(SIGNAL_POLL_S):
        pass
