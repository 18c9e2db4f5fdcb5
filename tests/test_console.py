"""The console's pages and actions over the real APIs: the Cloud Tasks emulator and Firestore."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import render_template_string
from flask.testing import FlaskClient
from google.cloud import firestore, tasks_v2

from console.app import create_app
from console.attempt_rates import AttemptRates
from console.config import ConsoleConfig
from console.counts import OrderCounts
from console.queues import QueueView
from fanout.config import FanoutConfig
from localcloud.tasks.server import TasksEmulator
from orders.clients import tasks_client
from orders.contract import TaskPayload, build_task
from orders.schema import DEAD_LETTERS, FANOUT_RUNS, ORDERS
from orders.settings import CloudSettings
from tests.support.clock import FakeClock
from tests.support.fanout_setup import SCHEDULER, make_cloud, served_fanout
from tests.support.receiver import Receiver, wait_for
from tests.support.seeding import seed_orders

PAGE = 2


def _client(config: ConsoleConfig, **kwargs: Any) -> FlaskClient:
    app = create_app(config, **kwargs)
    app.testing = True
    return app.test_client()


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _task_ids(html: str) -> list[str]:
    return re.findall(r'data-task="([^"]+)"', html)


@pytest.fixture
def cloud(project: str, tasks_emulator: TasksEmulator, receiver: Receiver) -> CloudSettings:
    return make_cloud(project, tasks_emulator, receiver.url(""))


@pytest.fixture
def console(cloud: CloudSettings) -> FlaskClient:
    return _client(ConsoleConfig(cloud=cloud, page_size=PAGE))


@pytest.fixture
def paused_tasks(cloud: CloudSettings) -> Iterator[list[str]]:
    """Five tasks in the paused queue: order-0 .. order-4, action send_confirmation."""
    client = tasks_client(cloud)
    client.pause_queue(name=cloud.queue_path)
    names = []
    for i in range(5):
        task = build_task(cloud, TaskPayload(f"order-{i}", "send_confirmation", 0, "run-1"))
        names.append(client.create_task(parent=cloud.queue_path, task=task).name)
    yield [name.rsplit("/", 1)[-1] for name in names]


def test_tasks_are_paged_filtered_run_and_deleted(
    console: FlaskClient, cloud: CloudSettings, paused_tasks: list[str], receiver: Receiver
) -> None:
    first = console.get("/queues/order-actions").get_data(as_text=True)
    assert "PAUSED" in first and len(_task_ids(first)) == PAGE
    seen = _task_ids(first)
    next_url = re.search(r'class="next" href="([^"]+)"', first)
    while next_url:
        page = console.get(next_url.group(1).replace("&amp;", "&")).get_data(as_text=True)
        seen += _task_ids(page)
        next_url = re.search(r'class="next" href="([^"]+)"', page)
    assert sorted(seen) == sorted(paused_tasks)
    filtered = console.get("/queues/order-actions?filter=order_2d3").get_data(as_text=True)
    [only] = _task_ids(filtered)
    assert "order-3" in filtered and only in paused_tasks
    refused = console.post(
        f"/queues/order-actions/tasks/{only}/delete", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert refused.status_code == 403  # a form on another site's page may not act here
    deleted = console.post(f"/queues/order-actions/tasks/{only}/delete")
    assert deleted.status_code == 303
    after = console.get("/queues/order-actions?filter=order_2d3").get_data(as_text=True)
    assert _task_ids(after) == []
    ran = console.post(f"/queues/order-actions/tasks/{paused_tasks[0]}/run")
    assert ran.status_code == 303
    wait_for(lambda: len(receiver.at("/tasks")) == 1)  # run now dispatches even when paused
    gone = console.post(f"/queues/order-actions/tasks/{only}/run")
    assert gone.status_code == 404 and "no longer exists" in _text(gone)


def test_queue_actions_reach_the_emulator(
    console: FlaskClient, cloud: CloudSettings, paused_tasks: list[str]
) -> None:
    client = tasks_client(cloud)
    console.post("/queues/order-actions/resume")
    assert client.get_queue(name=cloud.queue_path).state == tasks_v2.Queue.State.RUNNING
    console.post("/queues/order-actions/pause")
    assert client.get_queue(name=cloud.queue_path).state == tasks_v2.Queue.State.PAUSED
    console.post("/queues/order-actions/purge")
    wait_for(lambda: not list(client.list_tasks(parent=cloud.queue_path)))
    bad = console.post("/queues/order-actions/explode")
    assert bad.status_code == 400 and "use pause, resume or purge" in _text(bad)
    missing = console.get("/queues/no-such-queue")
    assert missing.status_code == 404 and "no queue 'no-such-queue'" in _text(missing)


def _attempt_cell(page: str, field: str) -> tuple[str, str, str]:
    """Return (data-source, title, text) of a queue row's attempt-rate cell."""
    cell = re.search(
        rf'data-field="{field}" data-source="([^"]+)"[^>]*?(?:title="([^"]*)")?>(.*?)</td>',
        page,
        re.S,
    )
    assert cell is not None, f"no {field} cell"
    source, title, text = cell.groups()
    return source, html.unescape(title or ""), re.sub(r"<[^>]+>", "", text).strip()


def test_retries_per_second_show_while_the_target_answers_503(
    console: FlaskClient, paused_tasks: list[str], receiver: Receiver
) -> None:
    receiver.scripts["/tasks"] = [503] * 5  # each task's first attempt fails, then 200
    assert console.post("/queues/order-actions/resume").status_code == 303
    receiver.wait_at("/tasks", 10)

    def retries_shown() -> str:
        page = console.get("/queues/order-actions").get_data(as_text=True)
        source, _, text = _attempt_cell(page, "retries-per-s")
        return page if source == "monitoring" and float(text) > 0 else ""

    page = wait_for(retries_shown, 15, "a non-zero retries /s from Cloud Monitoring", poll_s=0.2)
    _, title, retries = _attempt_cell(page, "retries-per-s")
    assert "not a success" in title and "task_attempt_count" in title
    source, title, dispatches = _attempt_cell(page, "dispatches-per-s")
    assert source == "monitoring" and "whatever their response" in title
    assert float(dispatches) >= float(retries) > 0  # ten attempts, five of them failed


def test_without_monitoring_the_rate_columns_say_why(console: FlaskClient) -> None:
    view = QueueView(
        name="projects/p/locations/l/queues/q", state="RUNNING", max_dispatches_per_second=5,
        max_burst_size=5, max_concurrent_dispatches=5, max_attempts=5, min_backoff_s=0.1,
        max_backoff_s=1, tasks=3, in_flight=1, dispatches_per_s=0.5, enforced_rate=5,
        oldest_age_s=None,
    )  # fmt: skip
    rates = AttemptRates(unavailable="Cloud Monitoring refused the console's account")
    app = console.application
    with app.test_request_context("/"):
        page = render_template_string(
            '{% from "macros.html" import queue_rows with context %}'
            '{{ queue_rows(queues, rates, "/") }}',
            queues=[view],
            rates=rates,
        )
    source, title, text = _attempt_cell(page, "dispatches-per-s")
    assert (source, text) == ("queue-stats", "0.5") and "from the queue statistics" in title
    source, _, text = _attempt_cell(page, "retries-per-s")
    assert source == "none" and text == "—"
    assert "not known: Cloud Monitoring refused the console&#39;s account" in page


def test_orders_are_counted_by_status_and_paged(console: FlaskClient, db: firestore.Client) -> None:
    ids = seed_orders(db, 7)
    for order_id in ids[:3]:
        db.collection(ORDERS).document(order_id).update(
            {"status": "failed", "actions.update_inventory.lastError": "insufficient stock"}
        )
    db.collection(DEAD_LETTERS).add(
        {"reason": "body is not valid JSON", "receivedAt": dt.datetime.now(dt.UTC)}
    )
    page = console.get("/orders?status=failed").get_data(as_text=True)
    assert re.search(r'data-status="failed"><a[^>]*>3<', page)
    assert re.search(r'data-status="pending"><a[^>]*>4<', page)
    assert re.search(r'data-status="total">7<', page)
    assert re.findall(r'data-order="([^"]+)"', page) == ids[:2]
    assert "insufficient stock" in page
    after = console.get(f"/orders?status=failed&after={ids[1]}").get_data(as_text=True)
    assert re.findall(r'data-order="([^"]+)"', after) == ids[2:3]
    assert console.get("/orders?status=shipped").status_code == 400
    letters = console.get("/dead-letters").get_data(as_text=True)
    assert 'id="dead-letter-total">1<' in letters and "body is not valid JSON" in letters


def test_a_run_triggered_from_the_console_is_listed_with_its_trace(
    db: firestore.Client, project: str, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 3)
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    with served_fanout(FanoutConfig(cloud=cloud), tasks_emulator) as fanout:
        config = ConsoleConfig(cloud=cloud, fanout_url=fanout.url, page_size=PAGE)
        console = _client(config, tokens=lambda aud: tasks_emulator.issuer.mint(aud, SCHEDULER))
        assert console.post("/runs").status_code == 303
        wait_for(lambda: "last trigger" in console.get("/runs").get_data(as_text=True), 60)
    [run] = list(db.collection(FANOUT_RUNS).stream())
    assert run.get("state") == "finished" and run.get("trigger") == "http"
    runs = console.get("/runs").get_data(as_text=True)
    assert "last trigger" in runs and ": 200 " in runs
    assert f'data-run="{run.id}"' in runs
    detail = console.get(f"/runs/{run.id}").get_data(as_text=True)
    assert run.get("traceId") in detail and 'id="trace-link"' in detail
    assert console.get("/runs/nope").status_code == 404


def test_without_a_fanout_url_the_trigger_says_what_to_set(cloud: CloudSettings) -> None:
    console = _client(ConsoleConfig(cloud=cloud))
    page = console.get("/runs").get_data(as_text=True)
    assert "set FANOUT_URL" in page
    refused = console.post("/runs")
    assert refused.status_code == 502 and "FANOUT_URL" in _text(refused)


def test_counts_are_kept_briefly_and_refreshed_behind_the_page() -> None:
    calls: list[int] = []

    def counter() -> dict[str, int]:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the emulator went away")
        return {"pending": len(calls)}

    clock = FakeClock(0.0)
    counts = OrderCounts(counter, max_age_s=5, clock=clock)
    assert counts.get() == {"pending": 1}  # the first page waits for the count
    clock.advance(5)
    assert counts.get() == {"pending": 1} and len(calls) == 1  # fresh: kept
    clock.advance(0.1)
    assert counts.get() == {"pending": 1}  # stale: returned at once, refreshed behind
    wait_for(lambda: counts.get() == {"pending": 2})
    assert len(calls) == 2  # one refresh, however often the page was asked meanwhile
    clock.advance(6)
    counts.get()  # this refresh fails: the kept counts stay
    wait_for(lambda: len(calls) == 3)
    assert counts.get() == {"pending": 2}  # the failed refresh changed nothing
    wait_for(lambda: counts.get() == {"pending": 4})  # and the next one succeeds
