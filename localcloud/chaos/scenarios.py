"""The chaos scenarios: each runs the whole path on a fresh :class:`ChaosStack` with one fault.

A scenario seeds its orders, triggers the fan-out as Cloud Scheduler does,
injects its fault (once a quarter of the orders completed, or from the start
for faults that last the whole run), waits until every order is completed,
and checks the invariants (:mod:`localcloud.chaos.checks`). It measures the
seconds from the fault to full completion and the longest stretch in which no
order completed while some were left (dispatch at zero).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from localcloud.chaos.checks import invariants
from localcloud.chaos.stack import ChaosStack
from localcloud.demo import trigger_fanout
from localcloud.errors import LocalCloudError
from localcloud.seed import seed
from localcloud.stack import StackOptions
from orders.schema import INVENTORY, ORDERS, OrderStatus

POLL_INTERVAL_S = 0.25
WORKER_RESTART_AFTER_S = 5.0  # the crashed worker is back this long after the crash
TASKS_RESTART_AFTER_S = 2.0  # the killed tasks emulator is back this long after, seconds
FIRESTORE_STALL_S = 10.0  # the Firestore link holds every byte this long
FAIL_RATIO = 0.3  # share of deliveries answered 503 by the proxy
DROP_RATIO = 0.1  # share of answers dropped after the worker acted
FANOUT_KILL_AFTER_S = 0.5  # the fan-out is killed this long into its run, seconds
RETRIGGER_INTERVAL_S = 2.0  # the Scheduler's retry of a failed or skipped trigger, seconds

Fault = Callable[[ChaosStack], None]


@dataclass(frozen=True)
class Scenario:
    """A named fault, and when it strikes: at the trigger (whole-run faults) or later."""

    name: str
    description: str
    fault: Fault
    from_start: bool = False
    worker_proxy: bool = False  # needs the proxy in front of the worker
    firestore_link: bool = False  # needs the stallable link to Firestore


@dataclass
class Outcome:
    """What one scenario measured (seconds) and which invariants held."""

    scenario: str
    orders: int
    completed: int = 0
    seconds: float = 0.0
    fault_to_done_s: float = 0.0
    longest_stall_s: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every order completed and every invariant held."""
        return self.completed == self.orders and bool(self.checks) and all(self.checks.values())

    def to_dict(self) -> dict[str, object]:
        """Return the outcome as a JSON-ready dict."""
        return {**asdict(self), "passed": self.passed}


def _no_fault(stack: ChaosStack) -> None:
    """Inject nothing: the baseline the other scenarios compare with, measured in the same run."""


def _crash_worker(stack: ChaosStack) -> None:
    assert stack.worker is not None
    stack.worker.kill()
    worker = stack.worker
    threading.Thread(
        target=stack.restart,
        args=(worker, stack.worker_upstream, WORKER_RESTART_AFTER_S),
        daemon=True,
    ).start()


def _crash_tasks_emulator(stack: ChaosStack) -> None:
    stack.tasks_child.kill()
    time.sleep(TASKS_RESTART_AFTER_S)
    stack.tasks_child.start()


def _fail_deliveries(stack: ChaosStack) -> None:
    assert stack.worker_proxy is not None
    stack.worker_proxy.fail_ratio = FAIL_RATIO


def _drop_answers(stack: ChaosStack) -> None:
    assert stack.worker_proxy is not None
    stack.worker_proxy.drop_ratio = DROP_RATIO


def _stall_firestore(stack: ChaosStack) -> None:
    assert stack.firestore_link is not None
    threading.Thread(
        target=stack.firestore_link.stall, args=(FIRESTORE_STALL_S,), daemon=True
    ).start()


def _crash_fanout(stack: ChaosStack) -> None:
    assert stack.fanout is not None
    time.sleep(FANOUT_KILL_AFTER_S)
    stack.fanout.kill()
    stack.restart(stack.fanout, stack.fanout_url)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("baseline", "no fault: the same run undisturbed", _no_fault, from_start=True),
        Scenario("worker-crash", "worker SIGKILLed, back 5 s later", _crash_worker),
        Scenario("dropped-answers", "10% of answers lost after the worker acted",
                 _drop_answers, from_start=True, worker_proxy=True),
        Scenario("worker-503", "30% of deliveries answered 503 by the front end",
                 _fail_deliveries, from_start=True, worker_proxy=True),
        Scenario("tasks-emulator-crash", "tasks emulator SIGKILLed, restarted on its file",
                 _crash_tasks_emulator),
        Scenario("fanout-crash", "fanout SIGKILLed mid-run, the Scheduler triggers again",
                 _crash_fanout, from_start=True),
        Scenario("firestore-stall", "the Firestore link stalls 10 s", _stall_firestore,
                 firestore_link=True),
    )
}  # fmt: skip


def run_scenario(scenario: Scenario, orders: int, timeout_s: float) -> Outcome:
    """Run ``scenario`` over ``orders`` orders on a fresh stack; give up after ``timeout_s``."""
    options = StackOptions(project=f"chaos-{uuid.uuid4().hex[:8]}")
    stack = ChaosStack(options, scenario.worker_proxy, scenario.firestore_link)
    stack.start()
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = stack.direct_firestore_host
        db = firestore.Client(project=stack.options.project)
        seed(db, orders)
        stock_before = {s.id: int(s.get("stock")) for s in db.collection(INVENTORY).stream()}
        outcome = _watch(stack, db, scenario, orders, timeout_s)
        if outcome.completed == orders:
            outcome.checks = invariants(db, orders, stock_before, stack.warehouse)
    finally:
        stack.stop()
    if outcome.passed:
        stack.remove_logs()
    return outcome


def _watch(
    stack: ChaosStack, db: firestore.Client, scenario: Scenario, orders: int, timeout_s: float
) -> Outcome:
    """Trigger, inject the fault when due, and poll completions until done or timed out."""
    completed_query = (
        db.collection(ORDERS)
        .where(filter=FieldFilter("status", "==", OrderStatus.COMPLETED.value))
        .count()
    )
    outcome = Outcome(scenario.name, orders)
    started = time.monotonic()
    stop_triggering = threading.Event()
    trigger = threading.Thread(
        target=_trigger_until_run, args=(stack, stop_triggering), daemon=True
    )
    trigger.start()
    fault_at = None
    if scenario.from_start:
        fault_at = time.monotonic()
        threading.Thread(target=scenario.fault, args=(stack,), daemon=True).start()
    last_progress = time.monotonic()
    while outcome.completed < orders and time.monotonic() - started < timeout_s:
        time.sleep(POLL_INTERVAL_S)
        done = int(completed_query.get()[0][0].value)
        now = time.monotonic()
        if done > outcome.completed:
            outcome.completed, last_progress = done, now
        elif fault_at is not None or done:  # a stall counts once dispatching has begun
            outcome.longest_stall_s = max(outcome.longest_stall_s, now - last_progress)
        if fault_at is None and done >= orders // 4:
            fault_at = now
            threading.Thread(target=scenario.fault, args=(stack,), daemon=True).start()
    finished = time.monotonic()
    stop_triggering.set()
    outcome.seconds = round(finished - started, 1)
    outcome.fault_to_done_s = round(finished - (fault_at or started), 1)
    outcome.longest_stall_s = round(outcome.longest_stall_s, 1)
    return outcome


def _trigger_until_run(stack: ChaosStack, stop: threading.Event) -> None:
    """Trigger the fan-out, again every few seconds while the call fails or is skipped."""
    while not stop.is_set():
        try:
            summary = trigger_fanout(stack)
        except (requests.RequestException, LocalCloudError):  # the Scheduler retries
            summary = {}
        if summary.get("state") in ("finished", "continuing"):
            return
        stop.wait(RETRIGGER_INTERVAL_S)
