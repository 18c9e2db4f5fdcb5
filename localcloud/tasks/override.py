"""Queue-level HTTP target overrides (``Queue.http_target``), applied to every dispatch.

Semantics (Cloud Tasks v2 ``HttpTarget`` / ``UriOverride`` reference):

* ``http_method``, when set, replaces each task's method;
* ``header_overrides`` are set on each task's request, replacing headers of the
  same name;
* ``oidc_token``, when set, replaces each task's authorization;
* ``uri_override`` replaces parts of each task's URL: ``scheme``, ``host``,
  ``port`` (0 clears it), ``path_override`` and ``query_override`` (an empty
  value clears the part). Its ``uri_override_enforce_mode`` ``IF_NOT_EXISTS``
  applies it only to tasks without a URL of their own, so, since every task here
  has one, never; ``ALWAYS`` (the default) applies it to every task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.cloud import tasks_v2
from google.protobuf import json_format

from localcloud.tasks.errors import InvalidArgumentError
from localcloud.tasks.headers import check_headers
from localcloud.tasks.model import TaskRecord
from localcloud.tasks.urls import check_host, check_url_text

HttpTarget = tasks_v2.HttpTarget.pb()
_SCHEMES = {1: "http", 2: "https"}
_IF_NOT_EXISTS = 1


@dataclass(frozen=True)
class HttpOverride:
    """A queue's overrides; ``None`` fields leave the task's own value alone."""

    http_method: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    oidc_email: str = ""
    oidc_audience: str = ""
    scheme: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    query: str | None = None
    uri_only_if_missing: bool = False


def override_from_pb(target: Any) -> HttpOverride:
    """Validate a ``google.cloud.tasks.v2.HttpTarget`` message and return its overrides."""
    if target.HasField("oauth_token"):
        raise InvalidArgumentError(
            "http_target.oauth_token is not supported by the emulator; use oidc_token."
        )
    if target.HasField("oidc_token") and not target.oidc_token.service_account_email:
        raise InvalidArgumentError("http_target.oidc_token.service_account_email is required.")
    headers = {h.header.key: h.header.value for h in target.header_overrides}
    check_headers(headers)
    uri = target.uri_override
    has = uri.HasField
    if has("host") and not uri.host:
        raise InvalidArgumentError("http_target.uri_override.host must not be empty.")
    if has("host"):
        check_url_text("http_target.uri_override.host", uri.host)
        check_host("http_target.uri_override.host", uri.host)
    if has("path_override"):
        check_url_text("http_target.uri_override.path_override.path", uri.path_override.path)
    if has("query_override"):
        check_url_text(
            "http_target.uri_override.query_override.query_params",
            uri.query_override.query_params,
        )
    if has("port") and not 0 <= uri.port <= 65535:
        raise InvalidArgumentError(
            f"http_target.uri_override.port must be in [0, 65535], got {uri.port}."
        )
    return HttpOverride(
        http_method=target.http_method,
        headers=tuple(headers.items()),
        oidc_email=target.oidc_token.service_account_email,
        oidc_audience=target.oidc_token.audience,
        scheme=_SCHEMES.get(uri.scheme) if has("scheme") else None,
        host=uri.host if has("host") else None,
        port=uri.port if has("port") else None,
        path=uri.path_override.path if has("path_override") else None,
        query=uri.query_override.query_params if has("query_override") else None,
        uri_only_if_missing=uri.uri_override_enforce_mode == _IF_NOT_EXISTS,
    )


def override_from_json(text: str) -> HttpOverride | None:
    """Return the overrides stored as ``HttpTarget`` JSON (None for an empty text)."""
    if not text:
        return None
    return override_from_pb(json_format.Parse(text, HttpTarget()))


def apply_override(task: TaskRecord, override: HttpOverride) -> TaskRecord:
    """Return the request ``task`` is sent as under its queue's ``override``."""
    headers = dict(task.headers)
    for key, value in override.headers:
        for existing in [k for k in headers if k.lower() == key.lower()]:
            del headers[existing]
        headers[key] = value
    changed = replace(task, headers=headers, url=_url(task.url, override))
    if override.http_method:
        changed.http_method = override.http_method
    if override.oidc_email:
        changed.oidc_email, changed.oidc_audience = override.oidc_email, override.oidc_audience
    return changed


def _url(url: str, override: HttpOverride) -> str:
    parts_overridden = (override.scheme, override.host, override.port, override.path)
    if (override.uri_only_if_missing and url) or (
        all(p is None for p in parts_overridden) and override.query is None
    ):
        return url
    parts = urlsplit(url)
    scheme = override.scheme or parts.scheme
    host = parts.hostname or "" if override.host is None else override.host
    port = parts.port if override.port is None else (override.port or None)
    netloc = host if port is None else f"{host}:{port}"
    path = parts.path if override.path is None else override.path
    query = parts.query if override.query is None else override.query
    return urlunsplit((scheme, netloc, path, query, ""))
