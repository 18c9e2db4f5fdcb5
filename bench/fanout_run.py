"""One full fan-out run over 20,000 pending orders against the Firestore emulator's ceiling.

The ceiling is what the emulator does for the same reads and writes without the
fan-out: the same cursor-paged query, and each page's orders updated with
batched writes (with the same update-time preconditions) committed in parallel,
as many at once as the run marks pages. The run additionally creates three tasks
per order in the Cloud Tasks emulator (its own process) and keeps its run record.
Prints orders/s for both and their ratio (the run's share of the ceiling).

Usage: .venv/bin/python bench/fanout_run.py [--orders 20000]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from bench.common import quiet_queue, rate, report, seed, tasks_emulator, timed
from fanout.app import build_runner
from fanout.config import FanoutConfig
from fanout.page_flow import MARKINGS_IN_FLIGHT
from fanout.selection import Selection
from fanout.summary import RunSummary
from localcloud.firestore_emulator import emulator_host

COMMITS_IN_FLIGHT = MARKINGS_IN_FLIGHT  # parallel page commits, as many as the run has
WARM_UP_ORDERS = 2000  # orders run through both paths first, so the JVM has compiled them


def ceiling(db: firestore.Client, page_size: int) -> int:
    """Page the pending orders with cursors and mark each page with parallel batched writes."""
    query = Selection().query(db).limit(page_size)

    def mark(page: list[firestore.DocumentSnapshot]) -> None:
        # The writes the run makes: each with a precondition on the time it was read.
        batch = BulkWriteBatch(db)
        for snapshot in page:
            option = db.write_option(last_update_time=snapshot.update_time)
            batch.update(
                snapshot.reference, {"status": "queued", "fanout.runId": "ceiling"}, option=option
            )
        batch.commit()

    done = 0
    cursor = None
    with ThreadPoolExecutor(COMMITS_IN_FLIGHT) as pool:
        while True:
            page = list((query.start_after(cursor) if cursor else query).stream())
            if not page:
                break
            pool.submit(mark, page)
            done += len(page)
            cursor = page[-1]
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=20_000)
    args = parser.parse_args()
    page_size = FanoutConfig.page_size
    with emulator_host(), tasks_emulator() as address:

        def measure_ceiling(orders: int) -> tuple[int, float]:
            db = firestore.Client(project=f"bench-ceiling-{uuid.uuid4().hex[:6]}")
            seed(db, orders)
            result: tuple[int, float] = timed(ceiling, db, page_size)
            return result

        def measure_run(orders: int) -> tuple[RunSummary, float]:
            project = f"bench-run-{uuid.uuid4().hex[:6]}"
            seed(firestore.Client(project=project), orders)
            # No ramp: this measures the run's own path against the emulator's ceiling,
            # not the 500/50/5 pacing a production queue gets.
            config = FanoutConfig(
                cloud=quiet_queue(project, address),
                time_budget_s=0,
                log_level="WARNING",
                ramp_start_per_s=0,
            )
            result: tuple[RunSummary, float] = timed(build_runner(config).run, "bench")
            return result

        print("warming the emulators up ...", file=sys.stderr)
        measure_ceiling(WARM_UP_ORDERS)
        measure_run(WARM_UP_ORDERS)
        print(f"measuring with {args.orders} orders ...", file=sys.stderr)
        before = measure_ceiling(args.orders)
        summary, run_s = measure_run(args.orders)
        after = measure_ceiling(args.orders)
    # The ceiling is the better of two measurements, one on each side of the run.
    ceiling_orders, ceiling_s = min(before, after, key=lambda m: m[1])
    run_rate = rate(summary.queued, run_s)
    ceiling_rate = rate(ceiling_orders, ceiling_s)
    report(
        {
            "orders": args.orders,
            "page_size": page_size,
            "run_queued": summary.queued,
            "run_tasks_created": summary.tasks_created,
            "run_seconds": round(run_s, 2),
            "run_orders_per_s": run_rate,
            "ceiling_orders": ceiling_orders,
            "ceiling_seconds": round(ceiling_s, 2),
            "ceiling_seconds_before_and_after": [round(before[1], 2), round(after[1], 2)],
            "ceiling_orders_per_s": ceiling_rate,
            "ratio": round(run_rate / ceiling_rate, 2) if ceiling_rate else None,
        }
    )


if __name__ == "__main__":
    main()
