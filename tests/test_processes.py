"""Managed child processes: stopping one stops its whole group before returning."""

from __future__ import annotations

import sys
from pathlib import Path

from localcloud.processes import ManagedProcess, live_group_members

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
