"""Serve a WSGI app over real HTTP on a free loopback port, in a thread."""

from __future__ import annotations

import threading
from typing import Any

from werkzeug.serving import make_server

SHUTDOWN_POLL_S = 0.05  # how soon a stopping server notices, seconds


class ServerThread:
    """A threaded werkzeug server for one app; ``url`` is its base URL.

    ``port`` 0 picks a free one; pass a port from ``free_port()`` when the app
    must know its own URL before it is built.
    """

    def __init__(self, app: Any, port: int = 0) -> None:
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        # serve_forever looks at shutdown() every poll_interval: its default, 0.5 s, made
        # every test that serves an app wait that long at teardown.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            daemon=True,
        )

    def __enter__(self) -> ServerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
