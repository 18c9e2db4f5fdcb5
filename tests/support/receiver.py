"""The one HTTP task target of the tests: records what it receives, answers from scripts.

It listens on a free loopback port (or ``port``; the conformance tests against
real Cloud Tasks reach it through ``public_url``, a tunnel to that port). Each
path answers from its script of replies (a status, or a :class:`Reply`), then
200; a reply may be held back for a while, to play a slow target. It counts the
requests it serves at once, overall and per path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")
POLL_S = 0.01  # how often wait_for looks again, seconds


@dataclass
class Received:
    at_s: float  # time.time() of arrival
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    header_names: list[str]  # as sent
    body: bytes
    query: str = ""


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # held back this long before answering, seconds


class Receiver:
    """Records every request; answers per path from a script of replies, then 200."""

    def __init__(self, port: int = 0, public_url: str = "") -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[Reply | int]] = {}
        self.delay_s = 0.0  # every answer held back this long, seconds
        self.delays_s: dict[str, float] = {}  # per path, seconds
        self.concurrent = 0
        self.max_concurrent = 0
        self.concurrent_at: dict[str, int] = {}
        self.max_concurrent_at: dict[str, int] = {}
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)  # notified on every request
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                headers = {k.lower(): v for k, v in self.headers.items()}
                names = list(self.headers.keys())
                with receiver.lock:
                    receiver.requests.append(
                        Received(time.time(), self.command, path, headers, names, body, query)
                    )
                    script = receiver.scripts.get(path)
                    reply = script.pop(0) if script else Reply()
                    reply = Reply(reply) if isinstance(reply, int) else reply
                    delay_s = reply.delay_s or receiver.delays_s.get(path, receiver.delay_s)
                    receiver.concurrent += 1
                    receiver.max_concurrent = max(receiver.max_concurrent, receiver.concurrent)
                    now = receiver.concurrent_at.get(path, 0) + 1
                    receiver.concurrent_at[path] = now
                    receiver.max_concurrent_at[path] = max(
                        receiver.max_concurrent_at.get(path, 0), now
                    )
                    receiver.arrived.notify_all()
                if delay_s:
                    time.sleep(delay_s)  # playing a slow target, not waiting for anything
                with receiver.lock:  # before answering: a slot is freed once the answer arrives
                    receiver.concurrent -= 1
                    receiver.concurrent_at[path] -= 1
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the caller gave up on us (a deadline)

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

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_at(self, path: str, count: int, timeout_s: float = 10.0) -> list[Received]:
        """Wait until ``count`` requests reached ``path``; return them all."""
        with self.arrived:
            if not self.arrived.wait_for(
                lambda: sum(r.path == path for r in self.requests) >= count, timeout_s
            ):
                raise AssertionError(f"{count} requests to {path} did not arrive in {timeout_s} s")
            return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def wait_for(
    predicate: Callable[[], T], timeout_s: float = 10.0, what: str = "", poll_s: float = POLL_S
) -> T:
    """Poll ``predicate`` (a condition in another thread or process) until it holds.

    Returns its first truthy result; fails after ``timeout_s`` seconds, saying
    ``what`` was awaited and the last result.
    """
    deadline = time.monotonic() + timeout_s
    while not (last := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what or 'condition'} not met within {timeout_s} s; last: {last!r}"
            )
        time.sleep(poll_s)
    return last
