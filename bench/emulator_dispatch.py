"""Dispatch accuracy of the emulator: a queue at 50 dispatches/s delivers 1000 tasks.

The emulator runs as a subprocess with its SQLite file; the handler is a threaded
HTTP server in this process that answers after ``--handler-ms`` and records when
each request arrived and how many were in flight. The tasks are created on a
paused queue, which is then resumed, so the run starts with a full bucket.

Prints one JSON object as its last line: the achieved rate after the initial
burst and its error against the configured rate (target within 5 %), and the
maximum observed concurrency against ``max_concurrent_dispatches`` (target never
above).

    .venv/bin/python bench/emulator_dispatch.py [--tasks 1000] [--rate 50] [--concurrency 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localcloud.tasks.child import EmulatorChild

LOCATION = "projects/bench/locations/us-central1"
NO_REST = ("--rest-port", "-1")


class Handler(BaseHTTPRequestHandler):
    """Records arrival times and requests not yet answered; answers 200 after ``server.delay_s``."""

    server: Recorder

    def do_POST(self) -> None:
        server = self.server
        with server.lock:
            server.arrivals.append(time.monotonic())
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        time.sleep(server.delay_s)
        with server.lock:  # before answering: the emulator frees a slot once it has the answer
            server.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.arrivals: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--handler-ms", type=float, default=80.0)
    args = parser.parse_args()
    recorder = Recorder(args.handler_ms / 1000.0)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{recorder.server_address[1]}/task"
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorChild([*NO_REST, "--db", str(Path(tmp) / "t.sqlite3")]) as emu,
    ):
        client = emu.client
        queue = client.create_queue(
            parent=LOCATION,
            queue={
                "name": f"{LOCATION}/queues/dispatch",
                "rate_limits": {
                    "max_dispatches_per_second": args.rate,
                    "max_concurrent_dispatches": args.concurrency,
                },
            },
        )
        client.pause_queue(name=queue.name)
        for start in range(0, args.tasks, 100):
            count = min(100, args.tasks - start)
            requests = [{"task": {"http_request": {"url": url}}} for _ in range(count)]
            client.batch_create_tasks(parent=queue.name, requests=requests).result()
        resumed = time.monotonic()
        client.resume_queue(name=queue.name)
        deadline = resumed + args.tasks / args.rate * 3 + 30
        while len(recorder.arrivals) < args.tasks and time.monotonic() < deadline:
            time.sleep(0.05)
    recorder.shutdown()
    times = sorted(recorder.arrivals)
    burst = queue.rate_limits.max_burst_size
    after = times[burst - 1 :]
    rate = (len(after) - 1) / (after[-1] - after[0]) if len(after) > 1 else 0.0
    report = {
        "tasks": args.tasks,
        "delivered": len(times),
        "configured_rate_per_s": args.rate,
        "max_burst_size": burst,
        "achieved_rate_after_burst_per_s": round(rate, 2),
        "rate_error_pct": round((rate - args.rate) / args.rate * 100, 2),
        "overall_rate_per_s": round(len(times) / (times[-1] - resumed), 2),
        "max_concurrent_dispatches": args.concurrency,
        "max_observed_concurrency": recorder.max_in_flight,
        "concurrency_ratio": round(recorder.max_in_flight / args.concurrency, 3),
        "seconds": round(times[-1] - resumed, 2),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
