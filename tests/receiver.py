"""An HTTP task target on a free loopback port that records what it receives.

It answers per path from a script of statuses (then 200), optionally after a
delay, and tracks how many requests it serves at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    at_s: float
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    header_names: list[str]
    body: bytes


class Receiver:
    """Records requests; answers per path from a script of statuses (then 200)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[int]] = {}
        self.delay_s = 0.0
        self.concurrent = 0
        self.max_concurrent = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with receiver.lock:
                    receiver.concurrent += 1
                    receiver.max_concurrent = max(receiver.max_concurrent, receiver.concurrent)
                    receiver.requests.append(
                        Received(
                            time.time(),
                            self.command,
                            path,
                            {k.lower(): v for k, v in self.headers.items()},
                            list(self.headers.keys()),
                            body,
                        )
                    )
                    script = receiver.scripts.get(path)
                    status = script.pop(0) if script else 200
                try:
                    if receiver.delay_s:
                        time.sleep(receiver.delay_s)
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                finally:
                    with receiver.lock:
                        receiver.concurrent -= 1

            def do_POST(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
