"""Structured logging: one JSON object per line, in the shape Cloud Logging reads.

On Cloud Run, stdout lines that are JSON become structured entries: ``severity``
and ``message`` are understood, ``logging.googleapis.com/trace`` ties the entry
to the request's trace (from the ``X-Cloud-Trace-Context`` header, see
:class:`TraceMiddleware`), and ``logging.googleapis.com/labels`` holds the ids
one filters by (run, order, action, task, retry count). On a terminal the same
records are printed as plain lines for people.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

# Attributes every LogRecord has; anything else came in through ``extra=`` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# Extras that become Cloud Logging labels (searchable, indexed) instead of payload fields.
LABELS = ("runId", "orderId", "action", "cloudTaskName", "retryCount", "executionCount")
TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
SAMPLED = "logging.googleapis.com/trace_sampled"
_TRACE_HEADER = re.compile(r"^(?P<trace>[0-9a-fA-F]{32})(?:/(?P<span>\d+))?(?:;o=(?P<o>[01]))?")
_request_trace: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "request_trace", default=None
)


def trace_fields(header: str | None, project: str) -> dict[str, Any]:
    """Return the Cloud Logging trace fields for an ``X-Cloud-Trace-Context`` header.

    The header reads ``TRACE_ID/SPAN_ID;o=OPTIONS``; anything unparsable gives {}.
    """
    match = _TRACE_HEADER.match(header or "")
    if match is None:
        return {}
    fields: dict[str, Any] = {TRACE: f"projects/{project}/traces/{match['trace']}"}
    if match["span"]:
        fields[SPAN] = format(int(match["span"]), "016x")  # decimal in the header, hex here
    if match["o"] is not None:
        fields[SAMPLED] = match["o"] == "1"
    return fields


class TraceMiddleware:
    """WSGI middleware: log records made while serving a request carry its trace."""

    def __init__(self, app: Callable[..., Iterable[bytes]], project: str) -> None:
        """Wrap the WSGI ``app`` of a service in ``project``."""
        self.app = app
        self.project = project

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve the request with its trace fields bound for the duration of the call."""
        fields = trace_fields(environ.get("HTTP_X_CLOUD_TRACE_CONTEXT"), self.project)
        token = _request_trace.set(fields or None)
        try:
            return self.app(environ, start_response)
        finally:
            _request_trace.reset(token)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: severity, message, logger, trace, labels, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON."""
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        entry.update(_request_trace.get() or {})
        labels: dict[str, str] = {}
        for key, value in _extras(record).items():
            if key in LABELS:
                labels[key] = str(value)
            else:
                entry[key] = value
        if labels:
            entry["logging.googleapis.com/labels"] = labels
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """Format a record for a person at a terminal: time, level, logger, message, extras."""

    def __init__(self) -> None:
        """Use a compact local-time layout."""
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """Return the plain line, then ``key=value`` for each extra."""
        extras = " ".join(f"{key}={value}" for key, value in _extras(record).items())
        line = super().format(record)
        return f"{line}  [{extras}]" if extras else line


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the root logger's records to ``stream`` (stdout), once per process.

    JSON lines for Cloud Logging, or plain lines when the stream is a terminal.
    """
    stream = stream or sys.stdout
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter | PlainFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter() if stream.isatty() else JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
