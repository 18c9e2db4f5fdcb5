"""The console on the local cloud: served from the launcher's process on a free port.

It is the same console as in production (``console.app.create_app``), pointed
at the stack's emulators; it triggers runs with tokens from the local issuer
for Cloud Scheduler's account, as the local scheduler does.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from console.app import create_app
from console.config import ConsoleConfig
from localcloud.processes import free_port
from localcloud.stack import SCHEDULER_EMAIL, LocalStack


class _QuietHandler(WSGIRequestHandler):
    """No access log: the launcher's output is for the person who started it."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """Log nothing."""


class LocalConsole:
    """The console of a started :class:`LocalStack`, in a thread of this process."""

    def __init__(self, stack: LocalStack, refresh_s: float = 2.0) -> None:
        """Describe the console of ``stack``; :meth:`start` serves it."""
        self._stack = stack
        self._refresh_s = refresh_s
        self._server: BaseWSGIServer | None = None
        self.url = ""

    def start(self) -> str:
        """Serve the console on a free loopback port; return its URL (ending in ``/``)."""
        stack = self._stack
        os.environ["FIRESTORE_EMULATOR_HOST"] = stack.firestore_host  # this process's clients
        config = ConsoleConfig(
            cloud=stack.cloud,
            fanout_url=stack.fanout_url,
            refresh_s=self._refresh_s,
            log_level="WARNING",
        )
        issuer = stack.tasks.issuer
        app = create_app(config, tokens=lambda audience: issuer.mint(audience, SCHEDULER_EMAIL))
        port = free_port()
        self._server = make_server(
            "127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler
        )
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # seconds until stop() is seen
            name="console",
            daemon=True,
        ).start()
        self.url = f"http://127.0.0.1:{port}/"
        return self.url

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
