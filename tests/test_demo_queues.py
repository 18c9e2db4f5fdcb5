"""`localcloud demo --queues N`: a queue group end to end, the worker taking every queue's tasks."""

from __future__ import annotations

import json

import pytest

from tests.test_demo import run_demo


@pytest.mark.usefixtures("firestore_emulator")  # skips outside CI, fails in CI, when it is missing
def test_demo_with_a_queue_group_completes_every_order() -> None:
    result = run_demo("--orders", "60", "--queues", "3", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["orders"] == report["completed"] == 60
    assert report["tasks_created"] == 180 and report["deduplicated"] == 0


def test_a_group_size_out_of_range_is_refused() -> None:
    result = run_demo("--queues", "0")
    assert result.returncode == 2
    assert "--queues" in result.stderr
