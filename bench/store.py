"""Client CPU of worker.store beside the official client, against the Firestore emulator.

Measures, in this process, the CPU time (``time.process_time``: every thread of
the client process, gRPC's included; the emulator is a process of its own) per
operation and the operations per second, at 16 threads, of:

- a commit as the worker's hot path makes it: an update with dotted field paths,
  SERVER_TIMESTAMP and Increment on an order, and the create of an outbox
  document with nested maps; through the official client's ``WriteBatch`` and
  through ``worker.store``;
- a read of one order: ``DocumentReference.get`` (the official client sends a
  streaming BatchGetDocuments) and ``Store.get`` (a unary GetDocument).

Each figure is the median of ``--rounds`` rounds, the variants alternating, after
an unmeasured warm-up (the emulator is a JVM). Starts the official emulator
unless FIRESTORE_EMULATOR_HOST is set. The last line is one JSON object: CPU ms
per operation, operations/s, and the ratios store / official (below 1: cheaper).

    .venv/bin/python bench/store.py [--ops 2000] [--threads 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore

from bench.common import report
from localcloud.firestore_emulator import FirestoreEmulator
from worker.store import SERVER_TIMESTAMP, Increment, Store, build_store

WARMUP_OPS = 300  # per variant, not measured
SEED_BATCH = 500
ACTION = "send_confirmation"


def order_update(i: int) -> dict[str, Any]:
    prefix = f"actions.{ACTION}"
    return {
        f"{prefix}.state": "done",
        f"{prefix}.completedAt": SERVER_TIMESTAMP,
        f"{prefix}.attempts": 1,
        f"{prefix}.generation": 1,
        f"{prefix}.taskName": f"projects/p/locations/l/queues/q/tasks/t-{i}",
        "actionsDone": Increment(1),
    }


def outbox_document(i: int) -> dict[str, Any]:
    return {
        "kind": "email",
        "orderId": f"o-{i}",
        "action": ACTION,
        "message": {
            "to": f"c{i}@example.com",
            "template": "order-confirmation",
            "items": [{"sku": "sku-1", "quantity": 2}, {"sku": "sku-2", "quantity": 1}],
            "meta": {"generation": 1, "locale": "en-GB"},
        },
        "state": "pending",
        "createdAt": SERVER_TIMESTAMP,
    }


def seed_orders(db: firestore.Client, collection: str, count: int) -> None:
    for start in range(0, count, SEED_BATCH):
        batch = db.batch()
        for i in range(start, min(start + SEED_BATCH, count)):
            batch.set(
                db.collection(collection).document(f"o-{i}"),
                {
                    "status": "queued",
                    "customerEmail": f"c{i}@example.com",
                    "items": [{"sku": "sku-1", "quantity": 2}],
                    "actions": {ACTION: {"state": "pending", "attempts": 0}},
                    "actionsDone": 0,
                },
            )
        batch.commit()


def measure(work: Callable[[int], None], ops: int, threads: int) -> tuple[float, float]:
    """Run ``work(i)`` for i < ops on ``threads`` threads; return CPU ms/op and ops/s."""
    with ThreadPoolExecutor(threads) as pool:
        cpu, wall = time.process_time(), time.perf_counter()
        list(pool.map(work, range(ops)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return 1000 * cpu / ops, ops / wall


def variants(
    db: firestore.Client, store: Store, rpc: dict[str, Any], ops: int
) -> dict[str, Callable[[str, int], None]]:
    """The four operations; each takes a round tag (unique create ids) and an index."""

    def official_commit(tag: str, i: int) -> None:
        batch = db.batch()
        batch.update(db.collection("orders_official").document(f"o-{i % ops}"), order_update(i))
        batch.create(db.collection("outbox").document(f"official-{tag}-{i}"), outbox_document(i))
        batch.commit(**rpc)

    def store_commit(tag: str, i: int) -> None:
        writes = store.writes()
        writes.update(store.document("orders_store", f"o-{i % ops}"), order_update(i))
        writes.create(store.document("outbox", f"store-{tag}-{i}"), outbox_document(i))
        store.commit(writes)

    def official_get(tag: str, i: int) -> None:
        snapshot = db.collection("orders_official").document(f"o-{i % ops}").get(**rpc)
        assert snapshot.exists and snapshot.to_dict()

    def store_get(tag: str, i: int) -> None:
        doc = store.get(store.document("orders_store", f"o-{i % ops}"))
        assert doc.exists and doc.to_dict()

    return {
        "official_commit": official_commit,
        "store_commit": store_commit,
        "official_get": official_get,
        "store_get": store_get,
    }


def bench(project: str, ops: int, threads: int, rounds: int) -> dict[str, Any]:
    timeout_s = 30.0
    retry = Retry(
        predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
        initial=0.1,
        maximum=1.0,
        timeout=timeout_s,
    )
    rpc: dict[str, Any] = {"retry": retry, "timeout": timeout_s}  # as the worker's
    db = firestore.Client(project=project)
    store = build_store(project, rpc=rpc)
    seed_orders(db, "orders_official", ops)
    seed_orders(db, "orders_store", ops)
    work = variants(db, store, rpc, ops)
    for run in work.values():
        measure(lambda i, run=run: run("warmup", i), WARMUP_OPS, threads)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in work}
    for round_no in range(rounds):
        for name, run in work.items():
            tag = f"r{round_no}"
            cpu_ms, per_s = measure(lambda i, run=run, tag=tag: run(tag, i), ops, threads)
            samples[name].append((cpu_ms, per_s))
            print(f"round {round_no}: {name:<16}{cpu_ms:7.3f} ms CPU/op {per_s:9.1f} ops/s")
    store.close()
    figures: dict[str, Any] = {"ops": ops, "threads": threads, "rounds": rounds}
    for name, each in samples.items():
        figures[f"{name}_cpu_ms"] = round(statistics.median(c for c, _ in each), 3)
        figures[f"{name}_per_s"] = round(statistics.median(r for _, r in each), 1)
    for kind in ("commit", "get"):
        official, store_ = figures[f"official_{kind}_cpu_ms"], figures[f"store_{kind}_cpu_ms"]
        figures[f"{kind}_cpu_ratio"] = round(store_ / official, 2)
        figures[f"{kind}_rate_ratio"] = round(
            figures[f"store_{kind}_per_s"] / figures[f"official_{kind}_per_s"], 2
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    emulator: FirestoreEmulator | None = None
    if not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        emulator = FirestoreEmulator()
        emulator.start()
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
    try:
        figures = bench(f"bench-store-{uuid.uuid4().hex[:8]}", args.ops, args.threads, args.rounds)
    finally:
        if emulator is not None:
            emulator.stop()
    report(figures)


if __name__ == "__main__":
    main()
