"""What the fanout benchmarks share: emulators in their own processes, a queue, seeding.

Benchmarks print figures and ratios against a baseline taken in the same run;
they assert nothing. Each prints one JSON object as its last line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from google.cloud import firestore, tasks_v2

from localcloud.processes import ManagedProcess, free_port
from orders.clients import tasks_client
from orders.schema import INVENTORY, ORDERS, new_order
from orders.settings import CloudSettings

SEED_BATCH = 500  # writes per seeding commit
SEED_THREADS = 8  # seeding commits in flight


@contextlib.contextmanager
def tasks_emulator(latency_ms: float = 0.0, durable: bool = False) -> Iterator[str]:
    """Run the Cloud Tasks emulator in its own process (its own core); yield its address.

    Its state is in memory, or with ``durable`` in a fresh SQLite file (WAL), as
    ``localcloud tasks-emulator`` keeps it by default.
    """
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    db = log_dir / "tasks.sqlite3" if durable else ":memory:"
    argv = [
        str(Path(sys.executable).parent / "localcloud"), "tasks-emulator",
        "--host", "127.0.0.1", "--port", str(port), "--latency-ms", str(latency_ms),
        "--rest-port", "-1", "--db", str(db),
    ]  # fmt: skip
    process = ManagedProcess("tasks-emulator", argv, log_dir / "tasks.log", dict(os.environ))
    process.start()
    address = f"127.0.0.1:{port}"
    try:
        process.wait_until(lambda: _grpc_ready(address), 30.0)
        yield address
    finally:
        process.stop()


def _grpc_ready(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=0.5)
        except grpc.FutureTimeoutError:
            return False
    return True


def quiet_queue(project: str, address: str) -> CloudSettings:
    """Create a queue that holds its tasks (1 dispatch/s to a closed port); return settings."""
    cloud = CloudSettings(
        project=project, worker_url="http://127.0.0.1:9", tasks_emulator_host=address
    )
    tasks_client(cloud).create_queue(
        parent=f"projects/{project}/locations/{cloud.location}",
        queue=tasks_v2.Queue(
            name=cloud.queue_path,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=1, max_concurrent_dispatches=1
            ),
        ),
    )
    return cloud


def seed(db: firestore.Client, count: int, prefix: str = "order") -> None:
    """Write ``count`` pending orders in parallel batched commits."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def commit(start: int) -> None:
        batch = db.batch()
        for i in range(start, min(start + SEED_BATCH, count)):
            items = [{"sku": f"sku-{i % 5}", "quantity": 1}]
            doc = new_order(f"c{i}@example.com", items, base + dt.timedelta(milliseconds=i))
            batch.set(db.collection(ORDERS).document(f"{prefix}-{i:07d}"), doc)
        batch.commit()

    for sku in range(5):
        db.collection(INVENTORY).document(f"sku-{sku}").set({"stock": 10**9})
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(commit, range(0, count, SEED_BATCH)))


def rate(count: int, seconds: float) -> float:
    """Items per second, rounded for printing."""
    return round(count / seconds, 1) if seconds > 0 else 0.0


def timed(function: Any, *args: Any) -> tuple[Any, float]:
    """Return ``function(*args)`` and the seconds it took."""
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


def report(figures: dict[str, Any]) -> None:
    """Print the figures readably, then as one JSON line (the last line)."""
    for name, value in figures.items():
        print(f"  {name:<28}{value}")
    print(json.dumps(figures, sort_keys=True))
