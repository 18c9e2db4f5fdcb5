"""One trace per run: the fan-out's tasks carry its trace, and the worker logs under it."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from fanout.config import FanoutConfig
from fanout.continuation import ContinuationRequest, continuation_task
from fanout.run import _run_trace
from localcloud.tasks.server import TasksEmulator
from orders.logs import TraceContext
from orders.schema import FANOUT_RUNS, ORDERS
from tests.support.fanout_setup import make_cloud, scheduler_headers, served_fanout
from tests.support.receiver import wait_for
from tests.support.seeding import seed_orders
from tests.support.worker_setup import queue_worker

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_traceparent_wins_over_the_cloud_header_and_both_are_written_back() -> None:
    trace = TraceContext.from_headers(
        f"00-{TRACE_ID}-00f067aa0ba902b7-01", "105445aa7843bc8bf206b12000100000/1;o=0"
    )
    assert trace == TraceContext(TRACE_ID, "00f067aa0ba902b7", True)
    headers = trace.headers()
    assert headers["traceparent"] == f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    assert headers["X-Cloud-Trace-Context"] == f"{TRACE_ID}/{int('00f067aa0ba902b7', 16)};o=1"
    cloud_only = TraceContext.from_headers("garbage", f"{TRACE_ID}/7;o=1")
    assert cloud_only == TraceContext(TRACE_ID, "0000000000000007", True)
    assert TraceContext.from_headers(f"00-{'0' * 32}-00f067aa0ba902b7-01", None) is None
    assert TraceContext.from_headers(None, None) is None


def _entries(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("incoming", ["traceparent", "none"])
def test_a_runs_fan_out_and_every_delivery_log_under_one_trace(
    db: firestore.Client,
    project: str,
    tasks_emulator: TasksEmulator,
    captured: io.StringIO,
    incoming: str,
) -> None:
    seed_orders(db, 12, skus=2)
    with queue_worker(project, tasks_emulator) as worker:
        cloud = make_cloud(project, tasks_emulator, worker.url)
        with served_fanout(FanoutConfig(cloud=cloud, page_size=5), tasks_emulator) as fanout:
            headers = scheduler_headers(tasks_emulator, fanout.url)
            if incoming == "traceparent":
                headers["traceparent"] = f"00-{TRACE_ID}-00f067aa0ba902b7-00"
            answer = requests.post(f"{fanout.url}/fanout", headers=headers, timeout=60)
            assert answer.status_code == 200, answer.text
            completed = db.collection(ORDERS).where(filter=FieldFilter("status", "==", "completed"))
            wait_for(lambda: completed.count().get()[0][0].value == 12, timeout_s=60)
    run_id = answer.json()["run_id"]
    trace_id = db.collection(FANOUT_RUNS).document(run_id).get().get("traceId")
    if incoming == "traceparent":
        assert trace_id == TRACE_ID
    else:  # no incoming trace: the run starts its own
        assert len(trace_id) == 32 and int(trace_id, 16) != 0
    trace = f"projects/{project}/traces/{trace_id}"
    entries = _entries(captured)
    ended = [e for e in entries if e["message"].startswith("fan-out segment ended")]
    assert [e["logging.googleapis.com/trace"] for e in ended] == [trace]
    deliveries = [
        e
        for e in entries
        if e["logger"] == "worker.app"
        and "cloudTaskName" in e.get("logging.googleapis.com/labels", {})
    ]
    assert len(deliveries) == 36  # 12 orders x 3 actions, each logged once as done
    assert {e.get("logging.googleapis.com/trace") for e in deliveries} == {trace}


def test_a_continuation_carries_the_runs_trace_and_resumes_under_it() -> None:
    trace = TraceContext(TRACE_ID, "00f067aa0ba902b7", False)
    config = FanoutConfig(fanout_url="http://127.0.0.1:9")
    task = continuation_task(config, ContinuationRequest("run-1", 1), trace.headers())
    headers = dict(task.http_request.headers)
    assert headers["traceparent"] == f"00-{TRACE_ID}-00f067aa0ba902b7-00"
    assert headers["Content-Type"] == "application/json"
    resumed = _run_trace({"traceId": TRACE_ID})  # no request trace bound: a new span of it
    assert resumed.trace_id == TRACE_ID and resumed.span_id
    assert _run_trace({}).trace_id != TRACE_ID  # a record from before traces: a new one
