"""Task creation throughput of the fanout's enqueue code against one CreateTask at a time.

100,000 tasks go through ``fanout.enqueue.Enqueuer`` (BatchCreateTasks, 100 per
call, several calls in flight) into the Cloud Tasks emulator, which adds 20 ms
to every RPC to stand in for the network. The baseline is the seeds' way: one
CreateTask at a time, each awaited before the next, measured on a sample in the
same run. Prints tasks/s for both and their ratio.

The enqueuer runs without pacing: this measures the creation path itself (task
building, the official client, the emulator), not the 500/50/5 ramp. A real run
paces every queue of its group with that ramp (``fanout/ramp.py``): a queue that
is new, or idle for 10 minutes, takes at most 500 creates/s for its first 5
minutes, then 750/s, 1,125/s, ... So 100,000 tasks into one fresh queue take at
least 200 seconds in production, whatever this figure is; a group of N queues
starts at N x 500/s.

Usage: .venv/bin/python bench/fanout_enqueue.py [--tasks 100000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import quiet_queue, rate, report, tasks_emulator, timed
from fanout.config import FanoutConfig
from fanout.enqueue import Created, Enqueuer, PendingCreation
from orders.clients import tasks_client
from orders.contract import TaskPayload, build_task
from orders.schema import ACTIONS
from orders.settings import CloudSettings

PAGE_ORDERS = FanoutConfig.page_size  # the run hands the enqueuer one page at a time


def tasks_of(cloud: CloudSettings, orders: range, prefix: str) -> list:  # type: ignore[type-arg]
    return [
        build_task(cloud, TaskPayload(f"{prefix}-{i:07d}", action, 0, "bench"))
        for i in orders
        for action in ACTIONS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_002)  # 33,334 orders, 3 tasks each
    parser.add_argument("--baseline-tasks", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--batches-in-flight", type=int, default=FanoutConfig.batches_in_flight)
    parser.add_argument(
        "--durable", action="store_true", help="the emulator keeps its state in a SQLite file"
    )
    args = parser.parse_args()
    with tasks_emulator(args.latency_ms, args.durable) as address:
        cloud = quiet_queue("bench-enqueue", address)
        client = tasks_client(cloud)

        def baseline() -> int:
            tasks = tasks_of(cloud, range(args.baseline_tasks // 3 + 1), "baseline")
            for task in tasks[: args.baseline_tasks]:
                client.create_task(parent=cloud.queue_path, task=task)
            return args.baseline_tasks

        def fanout_way() -> dict[Created, int]:
            # No pacer: the enqueue path alone (a real run also pays the ramp, see above).
            enqueuer = Enqueuer(client, cloud.queue_path, args.batches_in_flight, 30.0)
            counts = dict.fromkeys(Created, 0)
            orders = args.tasks // len(ACTIONS)
            in_flight: PendingCreation | None = None

            def collect(pending: PendingCreation) -> None:
                for result in pending.results():
                    counts[result.outcome] += 1

            # As the run does: submit a page, then collect the page before it.
            for start in range(0, orders, PAGE_ORDERS):
                page = tasks_of(cloud, range(start, min(start + PAGE_ORDERS, orders)), "bench")
                submitted = enqueuer.submit(page)
                if in_flight is not None:
                    collect(in_flight)
                in_flight = submitted
            if in_flight is not None:
                collect(in_flight)
            enqueuer.close()
            return counts

        baseline_count, baseline_s = timed(baseline)
        counts, fanout_s = timed(fanout_way)
    print(
        "creation pacing: none, the enqueue path alone; a real run paces each queue with "
        "the 500/50/5 ramp (500 creates/s for a fresh queue's first 5 minutes)",
        file=sys.stderr,
    )
    created = counts[Created.CREATED]
    fanout_rate = rate(created, fanout_s)
    baseline_rate = rate(baseline_count, baseline_s)
    report(
        {
            "latency_ms_per_rpc": args.latency_ms,
            "emulator_state": "sqlite file" if args.durable else "memory",
            "batches_in_flight": args.batches_in_flight,
            "tasks": created,
            "deduplicated": counts[Created.DEDUPLICATED],
            "failed": counts[Created.FAILED],
            "fanout_seconds": round(fanout_s, 2),
            "fanout_tasks_per_s": fanout_rate,
            "baseline_tasks": baseline_count,
            "baseline_tasks_per_s": baseline_rate,
            "ratio": round(fanout_rate / baseline_rate, 1) if baseline_rate else None,
        }
    )


if __name__ == "__main__":
    main()
