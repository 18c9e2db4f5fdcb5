"""Managed child processes: stopping one stops its whole group before returning."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from localcloud.processes import ManagedProcess, live_group_members, proc_stat_fields
from tests.support.receiver import wait_for

# A wrapper that leaves a grandchild behind, as gcloud leaves its Java child: the
# grandchild ignores SIGTERM, so only the SIGKILL sweep can end it.
_WRAPPER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').close(); time.sleep(600)", sys.argv[1]])
time.sleep(600)
"""


def _started_wrapper(tmp_path: Path) -> ManagedProcess:
    ready = tmp_path / "grandchild-ready"
    process = ManagedProcess(
        "wrapper", [sys.executable, "-c", _WRAPPER, str(ready)], tmp_path / "wrapper.log"
    )
    process.start()
    process.wait_until(ready.exists, timeout_s=30)
    return process


def test_stop_returns_only_when_no_member_of_the_group_is_left(tmp_path: Path) -> None:
    process = _started_wrapper(tmp_path)
    pgid = process.pid
    assert pgid is not None
    assert len(live_group_members(pgid)) == 2
    process.stop(grace_s=0.5)
    assert live_group_members(pgid) == []


def test_kill_returns_only_when_no_member_of_the_group_is_left(tmp_path: Path) -> None:
    process = _started_wrapper(tmp_path)
    pgid = process.pid
    assert pgid is not None
    process.kill()
    assert live_group_members(pgid) == []


# A process whose main thread has ended while another thread still serves a port,
# as a Java process's main thread may while it is being torn down.
_HEADLESS = """
import ctypes, socket, sys, threading, time
server = socket.create_server(("127.0.0.1", 0))
def serve():
    open(sys.argv[1], "w").write(str(server.getsockname()[1]))
    time.sleep(600)
threading.Thread(target=serve).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_process_whose_main_thread_ended_is_live_until_its_last_thread_ends(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "port"
    process = ManagedProcess(
        "headless", [sys.executable, "-c", _HEADLESS, str(ready)], tmp_path / "headless.log"
    )
    process.start()
    process.wait_until(lambda: ready.exists() and ready.read_text() != "", timeout_s=30)
    pgid = process.pid
    assert pgid is not None
    main_thread = Path(f"/proc/{pgid}/stat")
    wait_for(lambda: proc_stat_fields(main_thread)[0] == "Z", 30, "the main thread to end")
    assert live_group_members(pgid) == [pgid]
    port = int(ready.read_text())
    process.stop(grace_s=0.5)
    assert live_group_members(pgid) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0)
