"""Links a chaos scenario can break: an HTTP proxy in front of the worker, a TCP proxy to Firestore.

:class:`FaultyHttpProxy` stands where Cloud Run's front end stands: the tasks
emulator delivers to it, and it forwards to the worker. It can answer 503 itself
to a share of the deliveries (the worker never sees them), or forward a delivery
and then drop the worker's answer (the worker acted; the queue sees a broken
connection). When the worker is down it drops the connection, as a refused
connection would be seen. :class:`StallingTcpProxy` forwards bytes to Firestore
and can hold them for a while, as a stalled network link would.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import urllib3

from localcloud.http_server import QuietHTTPServer

FORWARD_TIMEOUT_S = 120.0  # longer than the tasks' dispatch deadline, seconds
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})


class FaultyHttpProxy:
    """An HTTP reverse proxy on a free loopback port to ``upstream`` (``http://host:port``).

    ``fail_ratio`` of the requests are answered 503 without being forwarded;
    ``drop_ratio`` of the rest are forwarded and their answer dropped.
    """

    def __init__(self, upstream: str, seed: int = 7) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_ratio = 0.0
        self.drop_ratio = 0.0
        self.failed = 0
        self.dropped = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._pool = urllib3.PoolManager(maxsize=64, retries=False)
        self._server = QuietHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    def start(self) -> FaultyHttpProxy:
        """Serve in a daemon thread; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._pool.clear()

    def decide(self) -> str:
        """Return what to do with the next request: ``fail``, ``drop`` or ``forward``."""
        with self._lock:
            if self._random.random() < self.fail_ratio:
                self.failed += 1
                return "fail"
            if self._random.random() < self.drop_ratio:
                self.dropped += 1
                return "drop"
            return "forward"

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        """Send the request upstream; return the urllib3 response (raises on no connection)."""
        return self._pool.request(
            method,
            self.upstream + path,
            body=body,
            headers=headers,
            timeout=FORWARD_TIMEOUT_S,
            redirect=False,
            preload_content=True,
        )


def _handler_for(proxy: FaultyHttpProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            action = proxy.decide()
            if action == "fail":
                self._answer(503, {"Retry-After": "1"}, b"injected 503")
                return
            try:
                answer = proxy.forward(self.command, self.path, headers, body)
            except urllib3.exceptions.HTTPError:
                self.close_connection = True  # the worker is down: no answer at all
                return
            if action == "drop":
                self.close_connection = True  # the worker acted; its answer is lost
                return
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            self._answer(answer.status, kept, answer.data)

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            with contextlib.suppress(OSError):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        do_POST = do_GET = do_PUT = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class StallingTcpProxy:
    """Forwards TCP connections to ``target`` (``host:port``); :meth:`stall` holds every byte."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self, seconds: float) -> None:
        """Hold every byte in both directions for ``seconds``, then let them through."""
        self._flowing.clear()
        time.sleep(seconds)
        self._flowing.set()

    def cut(self) -> None:
        """Close every connection and refuse new ones: the link is down for good."""
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
