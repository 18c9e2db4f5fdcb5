"""How long the console's pages take with a large backlog, against a small one (the baseline).

Seeds ORDERS pending orders in the Firestore emulator and TASKS tasks in a
paused queue of the Cloud Tasks emulator (its own process), then times each
page through the console app (median of 3 requests, milliseconds). The baseline
is the same pages over a hundredth of the data, measured in the same run, so
the ratio says how a page grows with the backlog (1.0: not at all). Prints one
JSON object as its last line.

    .venv/bin/python bench/console.py [--orders 100000] [--tasks 300000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from google.cloud import firestore, tasks_v2

from bench.common import quiet_queue, report, seed, tasks_emulator
from console.app import create_app
from console.config import ConsoleConfig
from localcloud.firestore_emulator import emulator_host
from orders.clients import tasks_client
from orders.settings import CloudSettings

BATCH = 100  # tasks per BatchCreateTasks call
PAGES = {
    "overview": "/",
    "queue_and_tasks": "/queues/order-actions",
    "task_filter_no_match": "/queues/order-actions?filter=no-such-order",
    "orders_pending": "/orders?status=pending",
    "orders_pending_page_2": "/orders?status=pending&after=order-0000049",
    "runs": "/runs",
    "dead_letters": "/dead-letters",
}


def create_tasks(cloud: CloudSettings, count: int) -> None:
    client = tasks_client(cloud)
    client.pause_queue(name=cloud.queue_path)

    def batch(start: int) -> None:
        request = tasks_v2.BatchCreateTasksRequest(parent=cloud.queue_path)
        for i in range(start, min(start + BATCH, count)):
            request.requests.append(
                tasks_v2.CreateTaskRequest(
                    parent=cloud.queue_path,
                    task=tasks_v2.Task(
                        name=f"{cloud.queue_path}/tasks/{i:08x}-order_2d{i:07d}-send_confirmation-g0",
                        http_request=tasks_v2.HttpRequest(url="http://127.0.0.1:9/tasks"),
                    ),
                )
            )
        client.batch_create_tasks(request=request).result()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, count, BATCH)))


def page_ms(address: str, orders: int, tasks: int) -> dict[str, float]:
    project = f"bench-console-{uuid.uuid4().hex[:8]}"
    seed(firestore.Client(project=project), orders)
    cloud = quiet_queue(project, address)
    create_tasks(cloud, tasks)
    app = create_app(ConsoleConfig(cloud=cloud, log_level="WARNING"))
    client = app.test_client()
    figures = {}
    for name, path in PAGES.items():
        times = []
        for _ in range(3):
            started = time.perf_counter()
            answer = client.get(path)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200, (path, answer.status_code)
        figures[name] = round(statistics.median(times) * 1000, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=300_000)
    args = parser.parse_args()
    with emulator_host(), tasks_emulator() as address:
        base = page_ms(address, args.orders // 100, args.tasks // 100)
        large = page_ms(address, args.orders, args.tasks)
    figures: dict[str, object] = {"orders": args.orders, "tasks": args.tasks}
    for name in PAGES:
        figures[f"{name}_ms"] = large[name]
        figures[f"{name}_baseline_ms"] = base[name]
        figures[f"{name}_ratio"] = round(large[name] / base[name], 2) if base[name] else 0.0
    report(figures)


if __name__ == "__main__":
    main()
