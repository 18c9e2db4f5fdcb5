"""The console in a real browser (Debian's headless Chromium driven by Selenium) during a demo.

``localcloud demo --keep-running`` runs as a user runs it; while its fan-out is
in progress the browser pauses the queue from the page, the numbers on every
page are compared with what Firestore and the Cloud Tasks emulator say, the
queue is resumed from the page, and a screenshot of each page is saved under
``test-artifacts/console/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore, tasks_v2, tasks_v2beta3
from google.cloud.firestore_v1.base_query import FieldFilter
from google.protobuf import field_mask_pb2

from orders.clients import tasks_client, tasks_stats_client
from orders.schema import DEAD_LETTERS, FANOUT_RUNS, ORDERS, OrderStatus
from orders.settings import CloudSettings
from tests.support.receiver import wait_for

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - the dev extras install it
    webdriver = None

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver  (as root; `make test` does it)"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
LOCALCLOUD = str(Path(sys.executable).parent / "localcloud")
ORDERS_SEEDED = 100
# Dispatches per second: slow enough that the queue is paused from the page with most
# of the run's tasks still waiting (it is, within a few seconds of the console's start).
DISPATCH_RATE = 30
QUEUE = "order-actions"
BROWSER_POLL_S = 0.25  # how often the page is looked at again, seconds


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def wait_until(check: Callable[[], Any], timeout_s: float = 60.0, what: str = "") -> Any:
    """Return the first truthy result of ``check``, polling; fail after ``timeout_s`` seconds."""

    def looked() -> Any:
        try:
            return check()
        except (StaleElementReferenceException, NoSuchElementException):
            return None  # the page refreshed, or a form's answer is loading: look again

    return wait_for(looked, timeout_s, what or str(check), poll_s=BROWSER_POLL_S)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if webdriver is None or missing:
        message = f"headless Chromium is missing ({', '.join(missing) or 'selenium'}): {INSTALL}"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Demo:
    """A running ``localcloud demo --keep-running`` and what it printed."""

    def __init__(self, tmp_path: Path, firestore_host: str) -> None:
        self.out_path = tmp_path / "demo.out"
        # The session's emulator, as a user's FIRESTORE_EMULATOR_HOST is used: starting
        # one of its own takes seconds, and tests/test_demo.py checks that path.
        environ = {**os.environ, "FIRESTORE_EMULATOR_HOST": firestore_host}
        argv = [LOCALCLOUD, "demo", "--orders", str(ORDERS_SEEDED), "--rate", str(DISPATCH_RATE)]
        with self.out_path.open("w") as out:
            self.process = subprocess.Popen(
                [*argv, "--keep-running"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
                start_new_session=True,  # its own process group, stopped as a whole
            )

    def output(self) -> str:
        return self.out_path.read_text()

    def printed(self, pattern: str) -> str:
        def find() -> str:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited early:\n{self.output()[-3000:]}")
            match = re.search(pattern, self.output())
            return match.group(1) if match else ""

        return str(wait_until(find, 120, f"the demo to print {pattern!r}"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def demo(firestore_emulator: str, tmp_path: Path) -> Iterator[Demo]:
    running = Demo(tmp_path, firestore_emulator)
    try:
        yield running
    finally:
        running.stop()


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def cell(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text.strip())


def click(driver: Any, css: str) -> None:
    def press() -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_until(press, 30, f"a button {css}")


def test_console_pages_match_firestore_and_the_emulator_and_pause_resume_work(
    browser: Any, demo: Demo
) -> None:
    console = demo.printed(r"console  (http://127\.0\.0\.1:\d+/)")
    tasks_host = demo.printed(r"Cloud Tasks emulator (127\.0\.0\.1:\d+)")
    firestore_host = demo.printed(r"Firestore emulator\s+(127\.0\.0\.1:\d+)")
    log_dir = Path(demo.printed(r"logs in (\S+)\)"))
    _pause_from_the_page(browser, console)  # first: most of the run's tasks are still waiting
    browser.get(console)
    project = cell(browser, "#project")
    cloud = CloudSettings(project=project, queue=QUEUE, tasks_emulator_host=tasks_host)
    v2, beta = tasks_client(cloud), tasks_stats_client(cloud)
    with pytest.MonkeyPatch.context() as env:  # the emulator the demo printed, for this test
        env.setenv("FIRESTORE_EMULATOR_HOST", firestore_host)
        db = firestore.Client(project=project)
        _compare_while_paused(browser, demo, console, cloud, v2, beta, db)
        _after_the_run(browser, demo, console, project, db, log_dir)


def _queue_state(v2: tasks_v2.CloudTasksClient, cloud: CloudSettings) -> str:
    return tasks_v2.Queue.State(v2.get_queue(name=cloud.queue_path).state).name


def _pause_from_the_page(browser: Any, console: str) -> None:
    row = f'#queues tr[data-queue="{QUEUE}"]'
    browser.get(f"{console}queues/{QUEUE}")
    click(browser, f'{row} button[data-action="pause"]')
    wait_until(lambda: cell(browser, f'{row} [data-field="state"]') == "PAUSED", 30, "PAUSED")


def _compare_while_paused(
    browser: Any,
    demo: Demo,
    console: str,
    cloud: CloudSettings,
    v2: tasks_v2.CloudTasksClient,
    beta: tasks_v2beta3.CloudTasksClient,
    db: firestore.Client,
) -> None:
    row = f'#queues tr[data-queue="{QUEUE}"]'
    assert _queue_state(v2, cloud) == "PAUSED"
    # Paused with the run's every task created and nothing in flight: the numbers hold still.
    runs = db.collection(FANOUT_RUNS)
    wait_until(
        lambda: [r for r in runs.stream() if r.get("state") == "finished"], 90, "the run to end"
    )
    mask = field_mask_pb2.FieldMask(paths=["stats"])

    def stats() -> Any:
        request = tasks_v2beta3.GetQueueRequest(name=cloud.queue_path, read_mask=mask)
        return beta.get_queue(request=request).stats

    wait_until(lambda: stats().concurrent_dispatches_count == 0, 60, "in-flight tasks to end")
    tasks = stats().tasks_count
    assert 0 < tasks <= 3 * ORDERS_SEEDED
    browser.get(f"{console}queues/{QUEUE}")
    assert cell(browser, f'{row} [data-field="tasks"]') == str(tasks)
    assert cell(browser, f'{row} [data-field="in-flight"]') == "0"
    assert cell(browser, f'{row} [data-field="waiting"]') == str(tasks)
    request = tasks_v2.ListTasksRequest(parent=cloud.queue_path, page_size=50)
    listed = next(iter(v2.list_tasks(request=request).pages)).tasks
    rows = browser.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task]")
    assert [r.get_attribute("data-task") for r in rows] == [
        t.name.rsplit("/", 1)[-1] for t in listed
    ]
    shot(browser, "queue")
    browser.get(console)
    expected = {
        status.value: str(
            _count(db.collection(ORDERS).where(filter=FieldFilter("status", "==", status)))
        )
        for status in OrderStatus
    }

    def shown() -> dict[str, str]:
        return {s: cell(browser, f'#order-counts [data-status="{s}"]') for s in expected}

    # Counts kept from an earlier page are refreshed behind it: the page catches up by itself.
    wait_until(lambda: shown() == expected, 30, f"the counts {expected}")
    assert cell(browser, '#order-counts [data-status="total"]') == str(ORDERS_SEEDED)
    shot(browser, "overview")
    # The page refreshes itself: a resume made elsewhere shows without reloading.
    v2.resume_queue(name=cloud.queue_path)
    wait_until(lambda: cell(browser, f'{row} [data-field="state"]') == "RUNNING", 30, "refresh")
    v2.pause_queue(name=cloud.queue_path)
    wait_until(lambda: cell(browser, f'{row} [data-field="state"]') == "PAUSED", 30, "refresh")
    click(browser, f'{row} button[data-action="resume"]')
    wait_until(lambda: _queue_state(v2, cloud) == "RUNNING", 30, "the queue to run again")


def _count(query: Any) -> int:
    return int(query.count().get()[0][0].value)


def _after_the_run(
    browser: Any, demo: Demo, console: str, project: str, db: firestore.Client, log_dir: Path
) -> None:
    demo.printed(r"(Still running)")  # every order completed, the report printed
    record_snapshot = next(iter(db.collection(FANOUT_RUNS).stream()))
    run_id, record = record_snapshot.id, record_snapshot.to_dict() or {}
    browser.get(f"{console}runs")
    row = f'#runs tr[data-run="{run_id}"]'
    for field, value in record["totals"].items():
        cells = browser.find_elements(By.CSS_SELECTOR, f'{row} [data-field="{field}"]')
        if cells:
            assert cells[0].text == str(value), field
    assert cell(browser, f'{row} [data-field="orders"]') == str(ORDERS_SEEDED)
    assert cell(browser, f'{row} [data-field="state"]') == "finished"
    shot(browser, "runs")
    browser.get(f"{console}runs/{run_id}")
    trace_id = record["traceId"]
    assert len(trace_id) == 32
    assert trace_id in cell(browser, '[data-field="trace-id"]')
    link = browser.find_element(By.ID, "trace-link").get_attribute("href")
    assert link.endswith(f"project={project}&tid={trace_id}")
    shot(browser, "run")
    browser.get(f"{console}orders?status=completed")
    rows = browser.find_elements(By.CSS_SELECTOR, "#orders tr[data-order]")
    first = db.collection(ORDERS).order_by("__name__").limit(len(rows)).stream()
    assert [r.get_attribute("data-order") for r in rows] == [s.id for s in first]
    assert len(rows) == min(ORDERS_SEEDED, 50)  # one page of the console's page size
    shot(browser, "orders")
    browser.get(f"{console}dead-letters")
    assert cell(browser, "#dead-letter-total") == str(_count(db.collection(DEAD_LETTERS)))
    shot(browser, "dead-letters")
    # One trace per run: every delivery the worker logged is under the run's trace.
    trace = f"projects/{project}/traces/{trace_id}"
    entries = [json.loads(line) for line in _lines(log_dir / "worker.log")]
    deliveries = [
        e for e in entries if "cloudTaskName" in e.get("logging.googleapis.com/labels", {})
    ]
    assert len(deliveries) >= 3 * ORDERS_SEEDED
    assert {e.get("logging.googleapis.com/trace") for e in deliveries} == {trace}


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except OSError as exc:  # pragma: no cover - a failure message, not a branch under test
        raise AssertionError(f"cannot read {path}: {exc}") from exc
    return [line for line in text.splitlines() if line.startswith("{")]
