"""A local warehouse: receives the worker's notifications and records what it gets.

``POST`` (any path) with an ``Idempotency-Key`` header and a JSON body: the first
notification of a key is kept and answered 201, a repeat is answered 200
``duplicate`` and kept only as a count, as a real idempotent API would.
``GET /notifications`` answers a summary. For tests it can answer the next
requests with a failure status (:meth:`WarehouseReceiver.fail_next`) and wait
before answering (``delay_s``, seconds).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from localcloud.http_server import QuietHTTPServer

NOTIFICATIONS_PATH = "/notifications"


class _Server(QuietHTTPServer):
    warehouse: WarehouseReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep connections open: every answer has a Content-Length
    # The status line and headers, then the body, go out in two writes: with Nagle's
    # algorithm on, the body waits for the client's delayed ACK (about 40 ms on Linux).
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, answer = self.server.warehouse.receive(self.headers.get("Idempotency-Key"), body)
        self._send(status, answer)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != NOTIFICATIONS_PATH:
            self._send(404, {"error": "Not Found", "message": f"no {self.path} here"})
            return
        self._send(200, self.server.warehouse.summary())

    def _send(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log."""


class WarehouseReceiver:
    """Records notifications by idempotency key on ``host`` (``port`` 0: a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Describe the receiver; :meth:`start` serves it."""
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._kept: dict[str, Any] = {}
        self._counts: Counter[str] = Counter()
        self._failures: list[int] = []
        self._duplicates = 0
        self.delay_s = 0.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WarehouseReceiver:
        """Bind and serve in a daemon thread; return self. Idempotent."""
        if self._server is None:
            server = _Server((self._host, self._port), _Handler)
            server.warehouse = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> WarehouseReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The URL to post notifications to (``WAREHOUSE_URL``)."""
        if self._server is None:
            raise RuntimeError("the warehouse receiver is not started")
        return f"http://{self._host}:{self._server.server_address[1]}{NOTIFICATIONS_PATH}"

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` notifications with ``status`` (and keep none of them)."""
        with self._lock:
            self._failures.extend([status] * count)

    def receive(self, key: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """Handle one notification; return the status and JSON answer."""
        if not key:
            return 400, {"error": "Bad Request", "message": "Idempotency-Key header is missing"}
        try:
            notification = json.loads(body)
        except ValueError as exc:
            return 400, {"error": "Bad Request", "message": f"body is not JSON: {exc}"}
        with self._lock:
            self._counts[key] += 1
            if self._failures:
                status = self._failures.pop(0)
                return status, {"error": "scripted failure", "message": f"answering {status}"}
            duplicate = key in self._kept
            self._duplicates += duplicate
            self._kept.setdefault(key, notification)
        if self.delay_s:
            time.sleep(self.delay_s)
        if duplicate:
            return 200, {"status": "duplicate", "idempotencyKey": key}
        return 201, {"status": "accepted", "idempotencyKey": key}

    @property
    def deliveries(self) -> int:
        """How many notifications arrived, repeats and failed ones included."""
        with self._lock:
            return sum(self._counts.values())

    def count(self, key: str) -> int:
        """How many notifications with ``key`` arrived."""
        with self._lock:
            return self._counts[key]

    def received(self) -> dict[str, Any]:
        """Return the notifications kept, by idempotency key (each key once)."""
        with self._lock:
            return dict(self._kept)

    def summary(self) -> dict[str, Any]:
        """Return ``notifications`` (distinct keys), ``deliveries`` (all) and ``duplicates``."""
        with self._lock:
            return {
                "notifications": len(self._kept),
                "deliveries": sum(self._counts.values()),
                "duplicates": self._duplicates,
            }
