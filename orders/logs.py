"""Structured logging: one JSON object per line, in the shape Cloud Logging reads.

On Cloud Run, stdout lines that are JSON become structured entries: ``severity``
and ``message`` are understood, ``logging.googleapis.com/trace`` ties the entry
to the request's trace (from the W3C ``traceparent`` header, or else
``X-Cloud-Trace-Context``; see :class:`TraceMiddleware` and :class:`TraceContext`),
and ``logging.googleapis.com/labels`` holds the ids one filters by (run, order,
action, task, retry count). On a terminal the same records are printed as plain
lines for people.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

# Attributes every LogRecord has; anything else came in through ``extra=`` and is logged.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# Extras that become Cloud Logging labels (searchable, indexed) instead of payload fields.
LABELS = ("runId", "orderId", "action", "cloudTaskName", "retryCount", "executionCount")
TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
SAMPLED = "logging.googleapis.com/trace_sampled"
_TRACE_HEADER = re.compile(r"^(?P<trace>[0-9a-fA-F]{32})(?:/(?P<span>\d+))?(?:;o=(?P<o>[01]))?")
_TRACEPARENT = re.compile(
    r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})"
)
_request_trace: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "request_trace", default=None
)


def trace_fields(header: str | None, project: str) -> dict[str, Any]:
    """Return the Cloud Logging trace fields for an ``X-Cloud-Trace-Context`` header.

    The header reads ``TRACE_ID/SPAN_ID;o=OPTIONS``; anything unparsable gives {}.
    """
    trace = TraceContext.from_headers(None, header)
    return trace.log_fields(project) if trace is not None else {}


@dataclass(frozen=True)
class TraceContext:
    """A trace and the span a request runs in; what a task's headers carry onward.

    ``trace_id`` is 32 lowercase hex digits, ``span_id`` 16 (empty when the
    incoming header had none), ``sampled`` None when the caller did not say.
    """

    trace_id: str
    span_id: str = ""
    sampled: bool | None = None

    @classmethod
    def new(cls) -> TraceContext:
        """Return a fresh trace (not sampled: its logs are joined, no spans are forced)."""
        return cls(secrets.token_hex(16), secrets.token_hex(8), False)

    @classmethod
    def from_headers(cls, traceparent: str | None, cloud_trace: str | None) -> TraceContext | None:
        """Parse W3C ``traceparent``, or else ``X-Cloud-Trace-Context``; None if neither parses."""
        match = _TRACEPARENT.match((traceparent or "").strip().lower())
        if match and match["trace"] != "0" * 32 and match["span"] != "0" * 16:
            return cls(match["trace"], match["span"], bool(int(match["flags"], 16) & 1))
        match = _TRACE_HEADER.match(cloud_trace or "")
        if match is None or match["trace"] == "0" * 32:
            return None
        span = format(int(match["span"]), "016x") if match["span"] else ""  # decimal there
        sampled = None if match["o"] is None else match["o"] == "1"
        return cls(match["trace"].lower(), span if span.strip("0") else "", sampled)

    def child(self) -> TraceContext:
        """Return a new span of the same trace (for work started on this one's behalf)."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.sampled)

    def headers(self) -> dict[str, str]:
        """Return the ``traceparent`` and ``X-Cloud-Trace-Context`` headers naming this span."""
        span = self.span_id or secrets.token_hex(8)
        return {
            "traceparent": f"00-{self.trace_id}-{span}-{'01' if self.sampled else '00'}",
            "X-Cloud-Trace-Context": f"{self.trace_id}/{int(span, 16)};o={int(bool(self.sampled))}",
        }

    def log_fields(self, project: str) -> dict[str, Any]:
        """Return the Cloud Logging fields (trace, span, sampled) of log entries in this span."""
        fields: dict[str, Any] = {TRACE: f"projects/{project}/traces/{self.trace_id}"}
        if self.span_id:
            fields[SPAN] = self.span_id
        if self.sampled is not None:
            fields[SAMPLED] = self.sampled
        return fields


_current_trace: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "current_trace", default=None
)


def current_trace() -> TraceContext | None:
    """Return the trace of the request (or :func:`bound_trace` block) being served, if any."""
    return _current_trace.get()


@contextlib.contextmanager
def bound_trace(trace: TraceContext, project: str) -> Iterator[None]:
    """Log every record made in this block (in this thread) under ``trace``."""
    trace_token = _current_trace.set(trace)
    fields_token = _request_trace.set(trace.log_fields(project))
    try:
        yield
    finally:
        _request_trace.reset(fields_token)
        _current_trace.reset(trace_token)


class TraceMiddleware:
    """WSGI middleware: log records made while serving a request carry its trace.

    The trace is read from ``traceparent`` first (W3C; Cloud Run and a fan-out's
    tasks send it), then from ``X-Cloud-Trace-Context``.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], project: str) -> None:
        """Wrap the WSGI ``app`` of a service in ``project``."""
        self.app = app
        self.project = project

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve the request with its trace fields bound for the duration of the call."""
        trace = TraceContext.from_headers(
            environ.get("HTTP_TRACEPARENT"), environ.get("HTTP_X_CLOUD_TRACE_CONTEXT")
        )
        if trace is None:
            return self.app(environ, start_response)
        with bound_trace(trace, self.project):
            return self.app(environ, start_response)


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
