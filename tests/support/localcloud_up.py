"""`localcloud up` as a child process for tests, its output in a log file."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 60.0


@contextlib.contextmanager
def localcloud_up(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run ``localcloud up ARGS`` with the repository's scheduler.yaml; yield it and its log.

    If the test leaves it running, it gets SIGTERM (it then stops everything it
    started, as on Ctrl-C), and SIGKILL only if that does not end it.
    """
    command = [
        str(Path(sys.executable).parent / "localcloud"), "up", *args,
        "--scheduler-file", str(ROOT / "scheduler.yaml"),
    ]  # fmt: skip
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
