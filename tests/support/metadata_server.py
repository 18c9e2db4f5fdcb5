"""A stand-in for the Compute Engine / Cloud Run metadata server, on a free loopback port.

google-auth finds the metadata server through two variables: ``GCE_METADATA_IP``
(read at each call; its ``GET /`` must answer ``Metadata-Flavor: Google``) and
``GCE_METADATA_HOST`` (read when ``google.auth.compute_engine._metadata`` is
first imported, so a process must have it in its environment from the start).
:attr:`MetadataServer.environ` gives both.

It answers what ``google.oauth2.id_token.fetch_id_token`` asks on Cloud Run:
the default service account (``instance/service-accounts/default/?recursive=true``)
and an ID token for an audience (``.../default/identity?audience=A&format=full``),
minted by a :class:`localcloud.oidc.LocalIssuer` for :attr:`email`. Like the
real server, it refuses requests without ``Metadata-Flavor: Google`` (403) and an
identity request without an audience (400). It records the paths asked for.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localcloud.oidc import LocalIssuer
from tests.support.servers import ServerThread

ACCOUNT_PATH = "/computeMetadata/v1/instance/service-accounts/default/"
IDENTITY_PATH = ACCOUNT_PATH + "identity"


class MetadataServer:
    """Serves the default account's identity, with tokens of ``issuer`` for ``email``."""

    def __init__(self, issuer: LocalIssuer, email: str) -> None:
        self.issuer = issuer
        self.email = email
        self.requests: list[str] = []  # path and query of each request, in order
        self._lock = threading.Lock()
        self._server = ServerThread(self.wsgi)
        self.address = self._server.url.removeprefix("http://")

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI app: records the request and answers it (:meth:`answer`)."""
        path = environ.get("PATH_INFO", "/")
        query = environ.get("QUERY_STRING", "")
        path_and_query = f"{path}?{query}" if query else path
        with self._lock:
            self.requests.append(path_and_query)
        status, content_type, body = self.answer(
            path_and_query, environ.get("HTTP_METADATA_FLAVOR", "")
        )
        data = body.encode()
        headers = [
            ("Metadata-Flavor", "Google"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
        ]
        start_response(f"{status} {_REASONS[status]}", headers)
        return [data]

    @property
    def environ(self) -> dict[str, str]:
        """The variables that point google-auth at this server."""
        return {"GCE_METADATA_HOST": self.address, "GCE_METADATA_IP": self.address}

    def answer(self, path_and_query: str, flavor: str) -> tuple[int, str, str]:
        """Return (status, content type, body) for a GET of ``path_and_query``."""
        parts = urlsplit(path_and_query)
        if parts.path == "/":
            return 200, "application/text", "computeMetadata/\n"
        if flavor != "Google":
            return 403, "text/html", "Missing Metadata-Flavor:Google header.\n"
        query = parse_qs(parts.query)
        if parts.path == ACCOUNT_PATH:
            account = {"email": self.email, "aliases": ["default"], "scopes": []}
            return 200, "application/json", json.dumps(account)
        if parts.path == IDENTITY_PATH:
            audience = query.get("audience", [""])[0]
            if not audience:
                return 400, "text/html", "non-empty audience parameter required\n"
            return 200, "text/html", self.issuer.mint(audience, self.email)
        return 404, "text/html", f"{parts.path} is not served by this stand-in\n"

    def __enter__(self) -> MetadataServer:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
