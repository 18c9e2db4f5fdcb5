"""Dispatch through a queue group: 4 queues of 100 dispatches/s each against 400/s configured.

4,002 tasks (1,334 orders, 3 actions each) are fanned out by the fanout's own
runner into a group of 4 queues in the Cloud Tasks emulator (its own process),
each queue limited to 100 dispatches per second, and delivered to a fast local
target that answers 200 at once. The aggregate dispatch rate is measured over
the middle 80% of the deliveries (the first ones are the queues' bursts). Then
the orders are set back as a run that stopped before marking them would leave
them, the fan-out runs again over the same orders, and every delivery is
counted per (order, action, generation): a second one is a duplicate.

Usage: .venv/bin/python bench/queue_group.py [--orders 1334] [--queues 4] [--rate 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.cloud import firestore, tasks_v2

from bench.common import rate, report, seed, tasks_emulator
from fanout.app import build_runner
from fanout.config import FanoutConfig
from localcloud.firestore_emulator import emulator_host
from orders.clients import tasks_client
from orders.schema import ORDERS
from orders.settings import CloudSettings
from tests.support.receiver import Receiver

DRAIN_TIMEOUT_S = 120.0  # the longest the deliveries may take, seconds


def group_settings(
    project: str, address: str, target: str, queues: int, per_s: float
) -> CloudSettings:
    """Create the group's queues, each at ``per_s`` dispatches per second; return settings."""
    cloud = CloudSettings(
        project=project, worker_url=target, tasks_emulator_host=address, queue_count=queues
    )
    client = tasks_client(cloud)
    for queue_id in cloud.queue_ids:
        client.create_queue(
            parent=f"projects/{project}/locations/{cloud.location}",
            queue=tasks_v2.Queue(
                name=cloud.queue_path_of(queue_id),
                rate_limits=tasks_v2.RateLimits(
                    max_dispatches_per_second=per_s, max_concurrent_dispatches=100
                ),
            ),
        )
    return cloud


def wait_for_deliveries(target: Receiver, count: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while len(target.at("/tasks")) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def middle_rate(times: list[float]) -> float:
    """Deliveries per second between the 10th and the 90th percentile of their times."""
    times = sorted(times)
    low, high = len(times) // 10, len(times) * 9 // 10
    return rate(high - low, times[high] - times[low]) if high > low else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1334)  # 4,002 tasks
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--rate", type=float, default=100.0, help="dispatches/s per queue")
    args = parser.parse_args()
    target = Receiver()
    project = f"bench-group-{uuid.uuid4().hex[:6]}"
    try:
        with emulator_host(), tasks_emulator() as address:
            db = firestore.Client(project=project)
            seed(db, args.orders)
            cloud = group_settings(project, address, target.url(""), args.queues, args.rate)
            config = FanoutConfig(cloud=cloud, time_budget_s=0, log_level="WARNING")
            runner = build_runner(config)
            first = runner.run("bench")
            tasks = first.tasks_created
            wait_for_deliveries(target, tasks)
            first_times = [r.at_s for r in target.at("/tasks")]
            # As a run that stopped before marking leaves them: pending, no fanout record.
            for snapshot in db.collection(ORDERS).stream():
                snapshot.reference.update({"status": "pending", "fanout": firestore.DELETE_FIELD})
            again = runner.run("bench")
            time.sleep(2.0)  # any second task would be delivered by now (400/s)
            deliveries = target.at("/tasks")
    finally:
        target.close()
    per_task = Counter(
        tuple(json.loads(r.body)[k] for k in ("orderId", "action", "generation"))
        for r in deliveries
    )
    by_queue = Counter(r.headers.get("x-cloudtasks-queuename", "") for r in deliveries)
    aggregate = middle_rate(first_times)
    configured = args.queues * args.rate
    report(
        {
            "orders": args.orders,
            "queues": args.queues,
            "tasks": tasks,
            "deliveries_per_queue": dict(sorted(by_queue.items())),
            "aggregate_dispatch_per_s": aggregate,
            "configured_per_s": configured,
            "ratio": round(aggregate / configured, 2) if configured else None,
            "rerun_tasks_created": again.tasks_created,
            "rerun_deduplicated": again.deduplicated,
            "duplicate_deliveries": sum(n - 1 for n in per_task.values()),
            "undelivered": tasks - len(per_task),
        }
    )


if __name__ == "__main__":
    main()
