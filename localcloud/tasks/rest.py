"""The Cloud Tasks v2 REST surface: JSON over HTTP, the paths of the protos' http rules.

Each route maps an HTTP method and path (from ``google.api.http`` of
``google/cloud/tasks/v2/cloudtasks.proto``) to the same handler the gRPC server
uses; requests and responses are converted with ``google.protobuf.json_format``.
Errors answer in Google's JSON error shape (``{"error": {"code", "message",
"status"}}``), with the HTTP status of their gRPC code. So ``gcloud tasks ...``
works against the emulator with ``api_endpoint_overrides/cloudtasks`` set to
:attr:`RestServer.url` and ``auth/disable_credentials`` true.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc
from google.protobuf import json_format

from localcloud.tasks.errors import (
    InvalidArgumentError,
    NotFoundError,
    TasksEmulatorError,
    UnimplementedError,
)
from localcloud.tasks.jsonbytes import check_bytes_fields
from localcloud.tasks.service import INTERNAL_MESSAGE, CloudTasksService, Method, call

log = logging.getLogger(__name__)

DEFAULT_LOCATION_IDS = ("us-central1",)  # what ListLocations reports
MAX_BODY_BYTES = 256 * 1024 * 1024  # a full batch of 100 tasks of 1 MiB fits
_SEG = r"[^/:]+"
_LOCATION = rf"projects/{_SEG}/locations/{_SEG}"
_QUEUE = rf"{_LOCATION}/queues/{_SEG}"
_TASK = rf"{_QUEUE}/tasks/{_SEG}"
_UNSERVED = re.compile(
    r"^/v2/.*(:getIamPolicy|:setIamPolicy|:testIamPermissions|/cmekConfig|/tasks:batchDelete)$"
)
_LENGTH = re.compile(r"[0-9]{1,18}")  # Content-Length: ASCII digits only
# Google's system parameters: accepted on every method, none changes the answer here.
SYSTEM_PARAMETERS = frozenset(
    {
        "alt", "prettyPrint", "fields", "key", "access_token", "oauth_token", "callback",
        "quotaUser", "userIp", "upload_protocol", "uploadType", "trace", "xgafv",
    }
)  # fmt: skip

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


@dataclass(frozen=True)
class Route:
    """One http rule: verb, path pattern (one capture), the field it fills, the body field.

    ``body`` is ``"*"`` for the whole request, a field name, or ``""`` for none.
    """

    verb: str
    pattern: re.Pattern[str]
    rpc: str
    field: str
    body: str


def _route(verb: str, template: str, rpc: str, field: str, body: str = "") -> Route:
    return Route(verb, re.compile(template), rpc, field, body)


ROUTES = (
    _route("GET", rf"/v2/({_LOCATION})/queues", "ListQueues", "parent"),
    _route("POST", rf"/v2/({_LOCATION})/queues", "CreateQueue", "parent", "queue"),
    _route("GET", rf"/v2/({_QUEUE})", "GetQueue", "name"),
    _route("PATCH", rf"/v2/({_QUEUE})", "UpdateQueue", "queue.name", "queue"),
    _route("DELETE", rf"/v2/({_QUEUE})", "DeleteQueue", "name"),
    _route("POST", rf"/v2/({_QUEUE}):pause", "PauseQueue", "name", "*"),
    _route("POST", rf"/v2/({_QUEUE}):resume", "ResumeQueue", "name", "*"),
    _route("POST", rf"/v2/({_QUEUE}):purge", "PurgeQueue", "name", "*"),
    _route("GET", rf"/v2/({_QUEUE})/tasks", "ListTasks", "parent"),
    _route("POST", rf"/v2/({_QUEUE})/tasks", "CreateTask", "parent", "*"),
    _route("POST", rf"/v2/({_QUEUE})/tasks:batchCreate", "BatchCreateTasks", "parent", "*"),
    _route("GET", rf"/v2/({_TASK})", "GetTask", "name"),
    _route("DELETE", rf"/v2/({_TASK})", "DeleteTask", "name"),
    _route("POST", rf"/v2/({_TASK}):run", "RunTask", "name", "*"),
    _route("GET", rf"/v2/({_LOCATION}/operations/{_SEG})", "GetOperation", "name"),
    _route("GET", rf"/v2/({_LOCATION})", "GetLocation", "name"),
    _route("GET", rf"/v2/(projects/{_SEG})/locations", "ListLocations", "name"),
)


def http_status(code: grpc.StatusCode) -> int:
    """Return the HTTP status Google's REST APIs use for a gRPC status code."""
    return _HTTP_STATUS.get(code, 500)


def error_body(exc: TasksEmulatorError, http_code: int | None = None) -> dict[str, Any]:
    """Return Google's JSON error document for ``exc`` (answered with ``http_code``)."""
    code = exc.grpc_code
    status = http_status(code) if http_code is None else http_code
    return {"error": {"code": status, "message": str(exc), "status": code.name}}


class RestApi:
    """Resolves REST requests to the service's methods; independent of any HTTP server."""

    def __init__(
        self, service: CloudTasksService, location_ids: tuple[str, ...] = DEFAULT_LOCATION_IDS
    ) -> None:
        self._service = service
        self._methods: dict[str, Method] = service.methods()
        self._beta: dict[str, Method] = service.beta_methods()
        self._location_ids = location_ids

    def handle(self, verb: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request: return the HTTP status and the JSON document."""
        try:
            return 200, self._dispatch(verb, target, body)
        except TasksEmulatorError as exc:
            return http_status(exc.grpc_code), error_body(exc)
        except Exception:  # never a dropped connection: an INTERNAL error document
            log.exception("internal error in REST %s %s", verb, target)
            return 500, error_body(TasksEmulatorError(INTERNAL_MESSAGE))

    def _dispatch(self, verb: str, target: str, body: bytes) -> dict[str, Any]:
        parts = urlsplit(target)
        query = {
            key: value
            for key, value in parse_qsl(parts.query)
            if key not in SYSTEM_PARAMETERS and not key.startswith("$")
        }
        for route in ROUTES:
            if route.verb != verb:
                continue
            match = route.pattern.fullmatch(parts.path)
            if match is not None:
                return self._call(route, match.group(1), query, body)
        if _UNSERVED.search(parts.path):
            raise UnimplementedError(f"{verb} {parts.path} is not implemented by the emulator.")
        raise NotFoundError(f"No Cloud Tasks v2 method for {verb} {parts.path}.")

    def _call(self, route: Route, value: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        if route.rpc == "GetLocation":
            return _location(value)
        if route.rpc == "ListLocations":
            return {"locations": [_location(f"{value}/locations/{i}") for i in self._location_ids]}
        fields: dict[str, Any] = dict(query)
        if route.body:
            document = _json(body)
            if route.body == "*":
                fields.update(document)
            else:
                fields[_camel(route.body)] = document
        if route.field == "queue.name":
            fields.setdefault("queue", {})["name"] = value
        else:
            fields[route.field] = value
        method = self._methods[route.rpc]
        if query.get("readMask") and route.rpc in self._beta:
            method = self._beta[route.rpc]  # queue statistics exist only in v2beta3
        check_bytes_fields(fields, method.request_cls.DESCRIPTOR, route.rpc)
        try:  # unknown fields and enum values are errors, as in Google's JSON APIs
            request = json_format.ParseDict(fields, method.request_cls())
        except json_format.ParseError as exc:
            raise InvalidArgumentError(f"Invalid JSON request for {route.rpc}: {exc}") from None
        except (ValueError, TypeError, AttributeError):  # a value of the wrong JSON type
            raise InvalidArgumentError(
                f"Invalid JSON request for {route.rpc}: a field has a value of the wrong type."
            ) from None
        response, error = call(method, request)
        if error is not None:
            raise error
        document_out: dict[str, Any] = json_format.MessageToDict(response)
        return document_out


def _json(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise InvalidArgumentError(f"Request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("Request body is JSON nested too deeply.") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError("Request body must be a JSON object.")
    return document


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _location(name: str) -> dict[str, Any]:
    return {"name": name, "locationId": name.rsplit("/", 1)[-1]}


class _Handler(BaseHTTPRequestHandler):
    server: _RestHTTPServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        raw_length = (self.headers.get("Content-Length") or "0").strip()
        length = int(raw_length) if _LENGTH.fullmatch(raw_length) else -1
        if length < 0:  # the body's end is unknown: answer, then close the connection
            shown = raw_length[:40]
            exc = InvalidArgumentError(f"Content-Length {shown!r} is not a number of bytes.")
            status, document = 400, error_body(exc)
            self.close_connection = True
        elif length > MAX_BODY_BYTES:
            exc = InvalidArgumentError(f"Request body over {MAX_BODY_BYTES} bytes.")
            status, document = 413, error_body(exc, http_code=413)
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            status, document = self.server.api.handle(self.command, self.path, body)
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        """Answer a GET."""
        self._serve()

    def do_POST(self) -> None:
        """Answer a POST."""
        self._serve()

    def do_PATCH(self) -> None:
        """Answer a PATCH."""
        self._serve()

    def do_DELETE(self) -> None:
        """Answer a DELETE."""
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("rest %s", format % args)


class _RestHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: RestApi


class RestServer:
    """Serves :class:`RestApi` on ``host:port`` (0 = a free port) in a background thread."""

    def __init__(self, api: RestApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _RestHTTPServer((host, port), _Handler)
        self._server.api = api
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # seconds until stop() is seen
            name="tasks-rest",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8124/`` (what gcloud's override wants)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.ident is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
