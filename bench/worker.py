"""Benchmark the worker against the Firestore emulator, beside the emulator's own ceiling.

Starts the official Firestore emulator (or uses FIRESTORE_EMULATOR_HOST), the local
OIDC issuer, the local warehouse and the worker under gunicorn, seeds orders, and
delivers every (order, action) task over HTTP, as Cloud Tasks would (headers and a
token), from 32 concurrent senders, after an unmeasured warm-up of 100 orders
(the emulator is a JVM). Then, in the same run and at the same
concurrency, it measures the emulator's raw ceiling: one read-modify-write
transaction per task on distinct documents, three times over (the median round
counts). The last line of stdout is one JSON object: tasks/s, p50/p99 latency
(ms), the ceiling and the ratio; ``cpu_ms_per_delivery``, the worker processes'
CPU (user and system, from /proc) per measured delivery; and, per completed
order, the Firestore RPCs and the billed document reads, writes and deletes
(:mod:`bench.billing`), of the worker (the same app, in this process, over
``BILLED_ORDERS`` more orders) and of the naive design (``naive_*``: one
read-modify-write transaction per action) in the same run.

    .venv/bin/python bench/worker.py [--orders 400] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3
from google.cloud import firestore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.billing import FirestoreBill, counted, naive_action, poster
from localcloud.firestore_emulator import FirestoreEmulator
from localcloud.oidc import LocalIssuer
from localcloud.processes import ManagedProcess, free_port, http_ok
from localcloud.seed import seed
from localcloud.warehouse import WarehouseReceiver
from orders.contract import TaskPayload
from orders.schema import ACTIONS, ORDERS
from worker.app import create_app
from worker.config import WorkerConfig

QUEUE = "bench-queue"
WARMUP_ORDERS = 100  # delivered first and not measured
CEILING_ROUNDS = 3  # the ceiling is the median round: a 2-second round varies by 15%
INVOKER = "bench-invoker@bench.iam.gserviceaccount.com"
BILLED_ORDERS = 60  # orders whose Firestore operations are counted, per design


def timed_run(
    work: Callable[[int], None], count: int, concurrency: int
) -> tuple[float, list[float]]:
    """Run ``work(i)`` for i < count on ``concurrency`` threads; return seconds and latencies."""
    latencies = [0.0] * count  # by task index

    def one(i: int) -> None:
        start = time.perf_counter()
        work(i)
        latencies[i] = time.perf_counter() - start

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started, latencies


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def tree_cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system) of process ``pid`` and its descendants, now."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        parents[int(entry.name)] = int(fields[1])  # ppid: the 4th field of stat
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) * tick_s  # utime, stime
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(each, 0.0) for each in tree)


def delivery_headers(token: str, i: int) -> dict[str, str]:
    """Return the headers Cloud Tasks would send with the ``i``-th task."""
    return {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "X-CloudTasks-QueueName": QUEUE,
        "X-CloudTasks-TaskName": f"bench-{i}",
        "X-CloudTasks-TaskRetryCount": "0",
        "X-CloudTasks-TaskExecutionCount": "0",
    }


def bill_worker(project: str, env: dict[str, str], token: str) -> dict[str, float]:
    """Deliver ``BILLED_ORDERS`` orders' tasks to the worker app in this process; count."""
    ids = seed(firestore.Client(project=project), BILLED_ORDERS)
    bill = FirestoreBill()
    with counted(bill):
        app = create_app(WorkerConfig.from_env({**env, "GOOGLE_CLOUD_PROJECT": project}))
        client = app.test_client()
        for i, task in enumerate(TaskPayload(o, a, 0, "bench") for o in ids for a in ACTIONS):
            answer = client.post("/tasks", data=task.to_json(), headers=delivery_headers(token, i))
            if answer.status_code != 200 or answer.get_json().get("outcome") != "done":
                raise SystemExit(f"billed delivery failed: {answer.status_code} {answer.data!r}")
    return bill.per(BILLED_ORDERS)


def bill_naive(project: str, warehouse_url: str) -> dict[str, float]:
    """Perform ``BILLED_ORDERS`` orders the naive way, in this process; count."""
    ids = seed(firestore.Client(project=project), BILLED_ORDERS)
    bill = FirestoreBill()
    post = poster(warehouse_url)
    with counted(bill):
        db = firestore.Client(project=project)
        for order_id in ids:
            for action in ACTIONS:
                naive_action(db, order_id, action, post)
    done = sum(1 for doc in db.collection(ORDERS).stream() if doc.get("status") == "completed")
    if done != BILLED_ORDERS:
        raise SystemExit(f"the naive design completed {done} of {BILLED_ORDERS} orders")
    return bill.per(BILLED_ORDERS, prefix="naive_")


def bench_worker(project: str, orders: int, concurrency: int, log_dir: Path) -> dict[str, float]:
    db = firestore.Client(project=project)
    every = seed(db, orders + WARMUP_ORDERS)
    warmup, ids = every[:WARMUP_ORDERS], every[WARMUP_ORDERS:]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with LocalIssuer() as issuer, WarehouseReceiver() as warehouse:
        env = {
            **os.environ,
            "GOOGLE_CLOUD_PROJECT": project,
            "WORKER_URL": url,
            "TASKS_QUEUE": QUEUE,
            "TASKS_INVOKER_EMAIL": INVOKER,
            "AUTH_ISSUERS": issuer.issuer_url,
            "AUTH_CERTS_URL": issuer.certs_url,
            "WAREHOUSE_URL": warehouse.url,
            "LOG_LEVEL": "WARNING",
            "GUNICORN_WORKERS": "2",  # as in the demo and the image
            "GUNICORN_THREADS": "16",
        }
        argv = [
            sys.executable, "-m", "gunicorn", "--config", "python:orders.serving",
            "--bind", f"127.0.0.1:{port}", "worker.app:create_app()",
        ]  # fmt: skip
        worker = ManagedProcess("worker", argv, log_dir / "worker.log", env)
        worker.start()
        try:
            worker.wait_until(lambda: http_ok(f"{url}/healthz"), 60)
            warm = [TaskPayload(o, a, 0, "bench") for a in ACTIONS for o in warmup]
            tasks = [TaskPayload(o, a, 0, "bench") for a in ACTIONS for o in ids]
            # urllib3 without requests on top: the sender shares the machine's two
            # cores with the worker and the emulator, so it should cost little.
            pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=concurrency, block=True)
            token = issuer.mint(url, INVOKER)
            failures: list[str] = []

            def send(task: TaskPayload, i: int) -> None:
                answer = pool.request(
                    "POST",
                    "/tasks",
                    body=task.to_json(),
                    headers=delivery_headers(token, i),
                    timeout=60.0,
                    retries=False,
                )
                if answer.status != 200 or json.loads(answer.data).get("outcome") != "done":
                    failures.append(f"{answer.status} {answer.data[:200]!r}")

            # Warm up the emulator's JIT, the channels and the thread pools first.
            timed_run(lambda i: send(warm[i], i), len(warm), concurrency)
            assert worker.pid is not None
            cpu_before_s = tree_cpu_s(worker.pid)
            seconds, latencies = timed_run(lambda i: send(tasks[i], i), len(tasks), concurrency)
            cpu_s = tree_cpu_s(worker.pid) - cpu_before_s
            for action in ACTIONS:
                mine = [
                    lat for lat, task in zip(latencies, tasks, strict=True) if task.action == action
                ]
                print(f"  {action}: p50 {percentile_ms(mine, 0.5)} ms", file=sys.stderr)
        finally:
            worker.stop()
        completed = sum(
            1 for doc in db.collection(ORDERS).stream() if doc.get("status") == "completed"
        )
        expected = orders + WARMUP_ORDERS
        notified = warehouse.summary()["notifications"]
        if failures or completed != expected or notified != expected:
            raise SystemExit(f"bench run was wrong: {failures[:3]}, {completed} completed")
        billed = bill_worker(f"{project}-billed", env, token)
        naive = bill_naive(f"{project}-naive", warehouse.url)
    return {
        "tasks": len(tasks),
        "tasks_per_s": round(len(tasks) / seconds, 1),
        "p50_ms": percentile_ms(latencies, 0.50),
        "p99_ms": percentile_ms(latencies, 0.99),
        "cpu_ms_per_delivery": round(1000 * cpu_s / len(tasks), 2),
        **billed,
        **naive,
    }


def bench_ceiling(project: str, count: int, concurrency: int) -> dict[str, float]:
    db = firestore.Client(project=project)
    refs = [db.collection("ceiling").document(f"doc-{i:06d}") for i in range(count)]
    batch = db.batch()
    for i, ref in enumerate(refs):
        batch.set(ref, {"value": 0})
        if i % 400 == 399:
            batch.commit()
            batch = db.batch()
    batch.commit()

    def read_modify_write(i: int) -> None:
        @firestore.transactional
        def bump(transaction: firestore.Transaction) -> None:
            snapshot = refs[i].get(transaction=transaction)
            transaction.update(refs[i], {"value": snapshot.get("value") + 1})

        bump(db.transaction())

    rounds = []
    for _ in range(CEILING_ROUNDS):
        seconds, latencies = timed_run(read_modify_write, count, concurrency)
        rounds.append((count / seconds, latencies))
    rounds.sort(key=lambda r: r[0])
    per_s, latencies = rounds[len(rounds) // 2]  # the median round
    print(f"  ceiling rounds: {[round(r[0], 1) for r in rounds]} tasks/s", file=sys.stderr)
    return {
        "ceiling_tasks_per_s": round(per_s, 1),
        "ceiling_p50_ms": percentile_ms(latencies, 0.50),
        "ceiling_p99_ms": percentile_ms(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400, help="orders (3 tasks each)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent deliveries")
    args = parser.parse_args()
    emulator: FirestoreEmulator | None = None
    log_dir = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        emulator = FirestoreEmulator(log_dir=log_dir)
        emulator.start()
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
    try:
        run = uuid.uuid4().hex[:8]
        worker = bench_worker(f"bench-w-{run}", args.orders, args.concurrency, log_dir)
        print(f"worker: {worker}", file=sys.stderr)
        ceiling = bench_ceiling(f"bench-c-{run}", worker["tasks"], args.concurrency)
        print(f"ceiling: {ceiling}", file=sys.stderr)
    except BaseException:
        print(f"the logs are kept in {log_dir}", file=sys.stderr)
        raise
    finally:
        if emulator is not None:
            emulator.stop()
    shutil.rmtree(log_dir, ignore_errors=True)
    result = {
        "concurrency": args.concurrency,
        **worker,
        **ceiling,
        "ratio": round(worker["tasks_per_s"] / ceiling["ceiling_tasks_per_s"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
