"""The HTTP target of conformance tests: records requests, answers from per-path scripts.

Against the emulator it listens on a free loopback port. Against real Cloud Tasks
it listens on ``CONFORMANCE_TARGET_PORT`` and is reached through the public URL in
``CONFORMANCE_TARGET_URL`` (a tunnel or proxy you run to that port).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hit:
    at_s: float
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: str = ""


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Target:
    """Records every request; answers per path from a script of replies, then 200."""

    def __init__(self, port: int = 0, public_url: str = "") -> None:
        self.hits: list[Hit] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.delays_s: dict[str, float] = {}
        self.concurrent: dict[str, int] = {}
        self.max_concurrent: dict[str, int] = {}
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                headers = {k.lower(): v for k, v in self.headers.items()}
                with target.lock:
                    target.hits.append(Hit(time.time(), self.command, path, headers, body, query))
                    script = target.scripts.get(path)
                    reply = script.pop(0) if script else Reply()
                    delay_s = reply.delay_s or target.delays_s.get(path, 0.0)
                    now = target.concurrent.get(path, 0) + 1
                    target.concurrent[path] = now
                    target.max_concurrent[path] = max(target.max_concurrent.get(path, 0), now)
                if delay_s:
                    time.sleep(delay_s)
                with target.lock:  # before answering: a slot is freed once the answer arrives
                    target.concurrent[path] -= 1
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the dispatcher gave up on us (dispatch_deadline)

            do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.base_url = public_url.rstrip("/") or f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def eventually(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.02)
