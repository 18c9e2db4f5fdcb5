"""A fan-out killed mid-run: its record shows its progress, says ``interrupted``, and resumes.

The run is ``fanout backfill`` in a process of its own (its own process group),
killed with SIGKILL as a crashed container would be, against the Firestore
emulator and a Cloud Tasks emulator that answers each call after a delay (so
the run lasts several seconds).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from google.cloud import firestore

from fanout.cli import main
from fanout.status import status_report
from localcloud.tasks.server import TasksEmulator
from orders.schema import FANOUT_RUNS, ORDERS
from tests.support.fanout_setup import make_cloud
from tests.support.receiver import wait_for
from tests.support.seeding import seed_orders

ORDERS_SEEDED = 800
PAGE_SIZE = 100  # 8 pages: fewer than the markings in flight, as in the reported bug
LEASE_S = 10  # short, yet long enough that a stalled renewal does not end it early, seconds


@pytest.fixture
def slow_tasks() -> Iterator[TasksEmulator]:
    emulator = TasksEmulator(rpc_latency_s=0.5)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _environ(project: str, emulator: TasksEmulator) -> dict[str, str]:
    cloud = make_cloud(project, emulator, "http://127.0.0.1:9")
    return {
        "GOOGLE_CLOUD_PROJECT": cloud.project,
        "CLOUD_TASKS_EMULATOR_HOST": cloud.tasks_emulator_host,
        "FIRESTORE_EMULATOR_HOST": os.environ["FIRESTORE_EMULATOR_HOST"],
        "WORKER_URL": cloud.worker_url,
        "FANOUT_PAGE_SIZE": str(PAGE_SIZE),
        "FANOUT_LEASE_SECONDS": str(LEASE_S),
        "LOG_LEVEL": "WARNING",
    }


def _only_run(db: firestore.Client) -> tuple[str, dict[str, Any]]:
    (snapshot,) = list(db.collection(FANOUT_RUNS).stream())
    return snapshot.id, snapshot.to_dict() or {}


def test_a_killed_run_shows_progress_is_marked_interrupted_and_resumes_to_the_end(
    db: firestore.Client, project: str, slow_tasks: TasksEmulator
) -> None:
    seed_orders(db, ORDERS_SEEDED)
    env = _environ(project, slow_tasks)
    backfill = subprocess.Popen(
        [sys.executable, "-c", "from fanout.cli import main; main()", "backfill", "--json"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        runs = db.collection(FANOUT_RUNS)
        wait_for(lambda: any(r.get("checkpoint") for r in runs.stream()), 60)
        assert backfill.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(backfill.pid, signal.SIGKILL)
        backfill.wait(10)
    run_id, killed = _only_run(db)
    assert killed["state"] == "running"
    assert 0 < killed["totals"]["pages"] < ORDERS_SEEDED // PAGE_SIZE
    assert killed["checkpointTotals"]["queued"] > 0  # pages up to the checkpoint were marked

    # While its lease lasts the run may still be alive: `fanout status` leaves it be.
    assert "running" in status_report(db, run_id).splitlines()[1]
    wait_for(lambda: "interrupted" in status_report(db, run_id).splitlines()[1], 3 * LEASE_S)
    _, interrupted = _only_run(db)
    assert interrupted["totals"] == killed["totals"]  # its last progress is kept
    assert f"--resume {run_id}" in interrupted["message"]
    # Orders the killed run marked after its last recorded checkpoint are queued, so
    # the resumed run does not see (or count) them again.
    checkpoint_id = interrupted["checkpoint"]["orderId"]
    marked_later = sum(
        1
        for doc in db.collection(ORDERS).stream()
        if doc.id > checkpoint_id and doc.get("status") == "queued"
    )

    resumed = CliRunner().invoke(
        main, ["backfill", "--resume", run_id, "--json"], env=env, catch_exceptions=False
    )
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["state"] == "finished"
    _, record = _only_run(db)
    totals = record["totals"]
    assert totals["orders"] == totals["queued"] == ORDERS_SEEDED - marked_later
    assert totals["tasks_created"] + totals["deduplicated"] == 3 * totals["orders"]
    assert totals["failed"] == 0
    statuses = {doc.get("status") for doc in db.collection(ORDERS).stream()}
    assert statuses == {"queued"}
    assert slow_tasks.stats()["tasks_created"] == 3 * ORDERS_SEEDED  # none created twice


def test_the_next_run_marks_a_dead_run_interrupted(
    db: firestore.Client, project: str, slow_tasks: TasksEmulator
) -> None:
    env = _environ(project, slow_tasks)
    runs = db.collection(FANOUT_RUNS)
    runs.document("dead").set({"state": "running", "segment": 0, "startedAt": 1})
    runs.document("done").set({"state": "finished", "segment": 0, "startedAt": 2})
    result = CliRunner().invoke(main, ["backfill", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    states = {doc.id: doc.get("state") for doc in runs.stream()}
    new_run = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    assert states == {"dead": "interrupted", "done": "finished", new_run: "finished"}
