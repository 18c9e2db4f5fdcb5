"""Unit tests of one dispatch attempt (headers, deadline, status mapping)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from localcloud.tasks.delivery import (
    DEADLINE_EXCEEDED,
    build_headers,
    deliver,
    http_to_grpc_code,
    new_session,
    parse_retry_after_s,
    retry_reason,
)
from tests.support.builders import make_task


@pytest.fixture
def slow_server() -> Iterator[str]:
    answer = threading.Event()  # set after the test: until then no answer comes

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            answer.wait(10)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/slow"
    answer.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_response_slower_than_deadline_is_a_failure(slow_server: str) -> None:
    session = new_session()
    try:
        result = deliver(session, make_task(slow_server, dispatch_deadline_s=0.1), "q", None)
    finally:
        session.close()
    assert not result.succeeded
    assert (result.http_status, result.grpc_code) == (0, DEADLINE_EXCEEDED)
    assert retry_reason(result) == "DEADLINE_EXCEEDED"


def test_reserved_headers_are_overridden_and_task_headers_kept() -> None:
    task = make_task(
        headers={
            "user-agent": "mine",
            "X-CloudTasks-TaskRetryCount": "99",
            "Authorization": "Basic abc",
            "X-Trace": "t1",
        },
        dispatch_count=3,
        execution_count=1,
        last_http_status=503,
        last_retry_reason="HTTP 503",
    )
    headers = build_headers(task, "q", "tok")
    assert headers["User-Agent"] == "Google-Cloud-Tasks"
    assert "user-agent" not in headers
    assert headers["X-CloudTasks-TaskRetryCount"] == "2"
    assert headers["X-CloudTasks-TaskExecutionCount"] == "1"
    assert headers["X-CloudTasks-TaskPreviousResponse"] == "503"
    assert headers["X-CloudTasks-TaskRetryReason"] == "HTTP 503"
    assert headers["X-CloudTasks-TaskETA"] == "1700000000.250000"
    assert headers["Authorization"] == "Bearer tok"
    assert headers["X-Trace"] == "t1"
    assert "Content-Type" not in headers
    assert build_headers(task, "q", None)["Authorization"] == "Basic abc"


def test_status_mapping_and_retry_after() -> None:
    assert http_to_grpc_code(204) == 0
    assert http_to_grpc_code(404) == 5
    assert http_to_grpc_code(418) == 9
    assert http_to_grpc_code(500) == 13
    assert http_to_grpc_code(503) == 14
    assert parse_retry_after_s("7", 0.0) == 7.0
    assert parse_retry_after_s(None, 0.0) is None
    assert parse_retry_after_s("garbage", 0.0) is None
    assert parse_retry_after_s("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == pytest.approx(60.0)
