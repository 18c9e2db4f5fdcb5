"""CreateTask and BatchCreateTasks throughput of the emulator, through the official client.

Runs the emulator as a subprocess twice, with its durable SQLite file (the
command's default) and with ``:memory:`` (the baseline, same run), on a paused
queue so dispatching does not compete. Prints one JSON object as its last line:
tasks/s per store and method, and the ratio file/memory.

    .venv/bin/python bench/emulator_create.py [--tasks 2000] [--threads 16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from localcloud.tasks.child import EmulatorChild

LOCATION = "projects/bench/locations/us-central1"
NO_REST = ("--rest-port", "-1")


def task(queue: str, url: str) -> dict[str, Any]:
    return {"name": f"{queue}/tasks/{uuid.uuid4().hex}", "http_request": {"url": url}}


def measure(db: str, tasks: int, threads: int) -> dict[str, float]:
    with EmulatorChild([*NO_REST, "--db", db]) as emulator:
        client = emulator.client
        queue = client.create_queue(
            parent=LOCATION, queue={"name": f"{LOCATION}/queues/create-{uuid.uuid4().hex[:8]}"}
        ).name
        client.pause_queue(name=queue)
        url = "http://127.0.0.1:9/never"
        for _ in range(50):  # warm up the channel and the server's threads
            client.create_task(parent=queue, task=task(queue, url))

        started = time.perf_counter()
        for _ in range(tasks // 4):
            client.create_task(parent=queue, task=task(queue, url))
        sequential = (tasks // 4) / (time.perf_counter() - started)

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda _: client.create_task(parent=queue, task=task(queue, url)), range(tasks)
                )
            )
        concurrent = tasks / (time.perf_counter() - started)

        def batch(_: int) -> None:
            requests = [{"task": task(queue, url)} for _ in range(100)]
            client.batch_create_tasks(parent=queue, requests=requests).result()

        batches = max(1, tasks * 5 // 100)
        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(batch, range(batches)))
        batched = batches * 100 / (time.perf_counter() - started)
    return {
        "create_task_sequential_per_s": round(sequential, 1),
        f"create_task_{threads}_threads_per_s": round(concurrent, 1),
        "batch_create_4_in_flight_per_s": round(batched, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = measure(str(Path(tmp) / "tasks.sqlite3"), args.tasks, args.threads)
    memory = measure(":memory:", args.tasks, args.threads)
    report: dict[str, Any] = {"tasks": args.tasks, "sqlite_file": sqlite, "memory": memory}
    report["ratio_file_to_memory"] = {k: round(sqlite[k] / memory[k], 3) for k in sqlite}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
