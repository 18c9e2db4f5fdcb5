"""Log lines in the shape Cloud Logging reads: severity, trace, labels; plain on a terminal."""

from __future__ import annotations

import io
import json
import logging

import requests
from google.cloud import firestore

from fanout.config import FanoutConfig
from localcloud.tasks.server import TasksEmulator
from orders.logs import JsonFormatter, PlainFormatter, trace_fields
from tests.support.fanout_setup import make_cloud, scheduler_headers, served_fanout


def test_the_trace_header_becomes_cloud_loggings_trace_fields() -> None:
    fields = trace_fields("105445aa7843bc8bf206b12000100000/1;o=1", "acme")
    assert fields == {
        "logging.googleapis.com/trace": "projects/acme/traces/105445aa7843bc8bf206b12000100000",
        "logging.googleapis.com/spanId": "0000000000000001",
        "logging.googleapis.com/trace_sampled": True,
    }
    assert trace_fields("not-a-trace", "acme") == {}
    assert trace_fields(None, "acme") == {}


def make_record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "ERROR", "levelno": 40})
    record.msg = "order not queued: %s"
    record.args = ("reason",)
    record.__dict__.update(extra)
    return record


def test_ids_become_labels_and_other_extras_stay_in_the_payload() -> None:
    line = JsonFormatter().format(make_record(orderId="o-1", runId="r-1", retryCount=2, pages=3))
    entry = json.loads(line)
    assert entry["severity"] == "ERROR" and entry["message"] == "order not queued: reason"
    assert entry["logging.googleapis.com/labels"] == {
        "orderId": "o-1",
        "runId": "r-1",
        "retryCount": "2",
    }
    assert entry["pages"] == 3 and "orderId" not in entry


def test_people_at_a_terminal_get_plain_lines() -> None:
    line = PlainFormatter().format(make_record(orderId="o-1"))
    assert "ERROR" in line and "order not queued: reason" in line and "orderId=o-1" in line
    assert not line.startswith("{")


def test_a_requests_log_lines_carry_its_trace(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator, captured: io.StringIO
) -> None:
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    with served_fanout(FanoutConfig(cloud=cloud), tasks_emulator) as fanout:
        headers = {
            **scheduler_headers(tasks_emulator, fanout.url),
            "X-Cloud-Trace-Context": "0123456789abcdef0123456789abcdef/7;o=1",
        }
        answer = requests.post(f"{fanout.url}/fanout", headers=headers, timeout=60)
    assert answer.status_code == 200
    run_id = answer.json()["run_id"]
    entries = [json.loads(line) for line in captured.getvalue().splitlines()]
    ended = [e for e in entries if e["message"].startswith("fan-out segment ended")]
    assert len(ended) == 1
    assert ended[0]["logging.googleapis.com/trace"] == (
        f"projects/{project}/traces/0123456789abcdef0123456789abcdef"
    )
    assert ended[0]["logging.googleapis.com/labels"] == {"runId": run_id}
    assert ended[0]["severity"] == "INFO"
