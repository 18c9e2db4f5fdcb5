"""The local cloud's small HTTP servers: threaded, and quiet when a client hangs up."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer
from typing import Any


class QuietHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that ignores clients that went away mid-request.

    A client that was killed or gave up (a crashed worker, a dispatcher past its
    deadline) is part of what the local cloud simulates, not an error: its
    ``ConnectionError`` is dropped instead of printed with a traceback. Any other
    error is reported as usual.
    """

    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 resets connections under load

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore a client that hung up; report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
