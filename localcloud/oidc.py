"""A local OpenID Connect issuer that mints Google-style ID tokens.

It serves, on ``127.0.0.1``:

* ``/.well-known/openid-configuration``: issuer, ``jwks_uri``, RS256;
* ``/certs``: a ``{kid: certificate PEM}`` map shaped like Google's
  ``https://www.googleapis.com/oauth2/v1/certs``, so
  ``google.oauth2.id_token.verify_token(token, request, audience, certs_url=...)``
  verifies its tokens;
* ``/jwks``: the same key as a JSON Web Key Set.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from localcloud.http_server import QuietHTTPServer

DEFAULT_TOKEN_LIFETIME_S = 3600
_CACHE_MIN_REMAINING_S = 300  # cached tokens are re-minted when this close to expiry


class OIDCIssuerError(Exception):
    """Root exception of the local OIDC issuer; raised when it cannot serve or mint."""


class IssuerNotRunningError(OIDCIssuerError):
    """Raised when a URL or token is requested before :meth:`LocalIssuer.start`."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def subject_for_email(email: str) -> str:
    """Return a stable 21-digit numeric subject id derived from ``email``."""
    digest = hashlib.sha256(email.encode("utf-8")).digest()
    return "1" + str(int.from_bytes(digest[:10], "big") % 10**20).rjust(20, "0")


class SigningKeyError(OIDCIssuerError):
    """Raised when a stored signing key cannot be loaded (not an RSA private key in PEM)."""


def _load_or_generate_key(key_pem: bytes | None) -> rsa.RSAPrivateKey:
    if key_pem is None:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise SigningKeyError(f"The stored OIDC signing key is not a PEM key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError("The stored OIDC signing key is not an RSA key; delete the --db.")
    return key


class _Handler(BaseHTTPRequestHandler):
    server: _IssuerHTTPServer

    def do_GET(self) -> None:
        documents = self.server.documents
        body = documents.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=3600")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr log."""


class _IssuerHTTPServer(QuietHTTPServer):
    documents: dict[str, bytes]


class LocalIssuer:
    """An RS256 OIDC issuer on ``host`` (default ``127.0.0.1``), ``port`` 0 = a free port.

    ``key_pem`` is a PKCS#8 PEM RSA private key to sign with (kept across
    restarts by whoever stores :attr:`private_key_pem`); without one an RSA-2048
    key is generated. Call :meth:`start` before using the URLs or minting tokens.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, key_pem: bytes | None = None
    ) -> None:
        self._host = host
        self._port = port
        self._key = _load_or_generate_key(key_pem)
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:40]
        self.private_key_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._signer = crypt.RSASigner.from_string(self.private_key_pem, key_id=self.kid)
        self._cert_pem = self._self_signed_cert().public_bytes(serialization.Encoding.PEM).decode()
        self._server: _IssuerHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self._cache_lock = threading.Lock()

    def _self_signed_cert(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localcloud OIDC issuer")])
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(self._key, hashes.SHA256())
        )

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> LocalIssuer:
        """Bind and serve in a daemon thread; return self. Idempotent."""
        if self._server is not None:
            return self
        server = _IssuerHTTPServer((self._host, self._port), _Handler)
        self._server = server
        server.documents = self._documents()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # seconds until stop() is seen
            name="oidc-issuer",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread. Idempotent."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalIssuer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- URLs -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise IssuerNotRunningError("The OIDC issuer is not started.")
        return int(self._server.server_address[1])

    @property
    def issuer_url(self) -> str:
        """Base URL ``http://HOST:PORT``, also the tokens' ``iss`` claim."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def certs_url(self) -> str:
        """URL of the ``{kid: certificate PEM}`` map, for ``verify_token(certs_url=...)``."""
        return self.issuer_url + "/certs"

    @property
    def jwks_url(self) -> str:
        """URL of the JSON Web Key Set."""
        return self.issuer_url + "/jwks"

    @property
    def certificate_pem(self) -> str:
        """The signing certificate in PEM form."""
        return self._cert_pem

    def _documents(self) -> dict[str, bytes]:
        numbers = self._key.public_key().public_numbers()
        jwks = {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.kid,
                    "n": _b64url_uint(numbers.n),
                    "e": _b64url_uint(numbers.e),
                }
            ]
        }
        discovery = {
            "issuer": self.issuer_url,
            "jwks_uri": self.jwks_url,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "aud",
                "azp",
                "email",
                "email_verified",
                "exp",
                "iat",
                "iss",
                "sub",
            ],
        }
        return {
            "/.well-known/openid-configuration": json.dumps(discovery).encode(),
            "/certs": json.dumps({self.kid: self._cert_pem}).encode(),
            "/jwks": json.dumps(jwks).encode(),
        }

    # -- tokens -----------------------------------------------------------------

    def mint(self, audience: str, email: str, lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S) -> str:
        """Return a new RS256 ID token for ``email`` with ``aud`` = ``audience``.

        Claims: ``iss`` (:attr:`issuer_url`), ``aud``, ``email``,
        ``email_verified``, ``sub`` and ``azp`` (a stable number derived from the
        email), ``iat`` and ``exp`` (``iat`` + ``lifetime_s`` seconds).
        """
        now = int(time.time())
        subject = subject_for_email(email)
        payload = {
            "iss": self.issuer_url,
            "aud": audience,
            "azp": subject,
            "sub": subject,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime_s,
        }
        token = jwt.encode(self._signer, payload)
        return token.decode("ascii") if isinstance(token, bytes) else str(token)

    def cached_token(self, audience: str, email: str) -> str:
        """Return a token for (audience, email), re-minted when under 5 minutes remain.

        Signing costs about a millisecond of CPU; dispatchers sending hundreds of
        requests per second reuse tokens, which verifiers cannot tell apart.
        """
        key = (audience, email)
        now = time.time()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] - now > _CACHE_MIN_REMAINING_S:
                return cached[0]
        token = self.mint(audience, email)
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (token, now + DEFAULT_TOKEN_LIFETIME_S)
        return token
