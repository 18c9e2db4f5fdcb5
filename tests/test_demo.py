"""The `localcloud demo` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.receiver import wait_for

LOCALCLOUD = str(Path(sys.executable).parent / "localcloud")


def demo_environ(firestore_host: str = "") -> dict[str, str]:
    """This environment, with ``firestore_host`` as the emulator (none: the demo starts one)."""
    environ = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
    if firestore_host:
        environ["FIRESTORE_EMULATOR_HOST"] = firestore_host
    return environ


def run_demo(
    *args: str, env: dict[str, str] | None = None, firestore_host: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the demo; it starts a Firestore emulator of its own unless given ``firestore_host``.

    Starting one (a JVM) takes seconds: the tests that check the demo's own emulator
    start it, the others use the session's, as a user's FIRESTORE_EMULATOR_HOST is used.
    """
    return subprocess.run(
        [LOCALCLOUD, "demo", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env or demo_environ(firestore_host),
    )


@contextlib.contextmanager
def started(
    argv: list[str], stdout: Any, stderr: Any, firestore_host: str = ""
) -> Iterator[subprocess.Popen[str]]:
    """Run ``argv`` with the demo's environment; stop it on the way out if it still runs.

    SIGTERM first, so that the demo stops the processes it started (SIGKILL would
    leave them running); SIGKILL only if it does not exit.
    """
    environ = demo_environ(firestore_host)
    process = subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=True, env=environ)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def listening(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def started_ports(stderr: str) -> list[str]:
    return re.findall(r"(127\.0\.0\.1:\d+)", stderr)


@pytest.mark.usefixtures("firestore_emulator")  # skips outside CI, fails in CI, when it is missing
def test_demo_completes_every_order_and_stops_everything() -> None:
    result = run_demo("--orders", "40", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["orders"] == report["completed"] == 40
    assert report["tasks_created"] == 120 and report["deduplicated"] == 0
    assert report["seconds"] > 0 and report["orders_per_s"] > 0
    assert "orders completed" in result.stderr  # the progress display
    ports = started_ports(result.stderr)
    assert len(ports) == 4  # Firestore, Cloud Tasks, worker, fanout
    assert not [p for p in ports if listening(p)], "a process outlived the demo"


def test_demo_that_times_out_says_so_and_exits_non_zero(firestore_emulator: str) -> None:
    result = run_demo(
        "--orders", "400", "--timeout", "1", "--json", firestore_host=firestore_emulator
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.search(r"only \d+ of 400 orders completed within 1 s", result.stderr)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["completed"] < 400
    ports = started_ports(result.stderr)
    # Firestore (the session's, left running), Cloud Tasks, worker, fanout
    assert firestore_emulator in ports and len(ports) == 4
    assert not [p for p in ports if p != firestore_emulator and listening(p)]


def test_demo_without_the_firestore_emulator_says_how_to_install_it(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "TMPDIR": str(temporary)}  # no gcloud
    result = run_demo("--orders", "5", env=env)
    assert result.returncode == 2
    assert "not installed" in result.stderr and "apt-get install" in result.stderr
    assert not list(temporary.iterdir())  # no empty log folder left behind


@pytest.mark.usefixtures("firestore_emulator")
def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    output = tmp_path / "demo.out"
    argv = [LOCALCLOUD, "demo", "--orders", "3000"]
    with open(output, "w") as sink, started(argv, sink, subprocess.STDOUT) as demo:
        wait_for(lambda: "Seeding" in output.read_text() or demo.poll() is not None, 120)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 130
    text = output.read_text()
    assert "interrupted" in text
    ports = started_ports(text)
    assert len(ports) == 4 and not [p for p in ports if listening(p)]


def test_keep_running_prints_the_json_report_at_once_and_ctrl_c_stops_it(
    tmp_path: Path, firestore_emulator: str
) -> None:
    errors = tmp_path / "demo.err"
    argv = [LOCALCLOUD, "demo", "--orders", "10", "--json", "--keep-running"]
    with (
        open(errors, "w") as sink,
        started(argv, subprocess.PIPE, sink, firestore_emulator) as demo,
    ):
        assert demo.stdout is not None
        with ThreadPoolExecutor(1) as reader:  # the report's JSON line, while it stays up
            line = reader.submit(demo.stdout.readline).result(timeout=120)
        report = json.loads(line)
        assert report["orders"] == report["completed"] == 10
        assert demo.poll() is None  # still running
        console = re.search(r"console  http://(127\.0\.0\.1:\d+)/", errors.read_text())
        assert console and listening(console.group(1))
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 130  # also when a thread other than main got it
    ports = started_ports(errors.read_text())
    assert len(ports) == 5  # the console, the session's Firestore emulator, tasks, worker, fanout
    assert [p for p in ports if listening(p)] == [firestore_emulator]  # the rest stopped


def test_demo_with_a_queue_group_completes_every_order(firestore_emulator: str) -> None:
    result = run_demo(
        "--orders", "60", "--queues", "3", "--json", firestore_host=firestore_emulator
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["orders"] == report["completed"] == 60
    assert report["tasks_created"] == 180 and report["deduplicated"] == 0


def test_a_group_size_out_of_range_is_refused() -> None:
    result = run_demo("--queues", "0")
    assert result.returncode == 2
    assert "--queues" in result.stderr
