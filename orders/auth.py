"""Verify the OIDC ID token of a caller (Cloud Tasks, Cloud Scheduler); shared by both services.

Google signs the tokens that Cloud Tasks and Cloud Scheduler attach
(``Authorization: Bearer <jwt>``) with keys published as a ``{kid: PEM}`` map
at ``https://www.googleapis.com/oauth2/v1/certs``. :class:`CallerVerifier`
checks, with google-auth's own JWT code (``google.auth.jwt.decode``, which is
what ``google.oauth2.id_token.verify_token`` runs): the RS256 signature against
the cached certs, ``exp`` and ``iat`` (with a small clock skew), ``aud``; then
itself: ``iss`` among the trusted issuers, ``email_verified`` and ``email`` in
the allow-list. Locally only the certs URL and the issuer differ.

Settings (:meth:`AuthSettings.from_env`), read by every service that verifies
callers; the defaults of audience and allow-list are the service's own:

- ``AUTH_AUDIENCE``: the expected ``aud`` (the worker: ``WORKER_URL``);
- ``AUTH_ALLOWED_EMAILS``: comma-separated service accounts allowed to call
  (the worker: ``TASKS_INVOKER_EMAIL``);
- ``AUTH_ISSUERS``: comma-separated trusted ``iss`` values (default
  ``https://accounts.google.com,accounts.google.com``);
- ``AUTH_CERTS_URL``: the ``{kid: PEM}`` map (default Google's v1 certs);
- ``AUTH_DISABLED``: ``true`` turns verification off, with a warning at start-up
  (default ``false``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from google.auth import exceptions as auth_exceptions
from google.auth import jwt

from orders.errors import (
    CertsUnavailableError,
    ForbiddenCallerError,
    InvalidTokenError,
    MissingTokenError,
    SettingsError,
)
from orders.settings import env_bool, env_str

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS: tuple[str, ...] = ("https://accounts.google.com", "accounts.google.com")
CLOCK_SKEW_S = 10  # allowed difference between our clock and the issuer's, seconds
VERIFIED_TOKENS_KEPT = 1024  # verified tokens remembered until they expire
DEFAULT_CERTS_MAX_AGE_S = 300.0  # cache lifetime when the certs answer has no max-age, seconds
MIN_REFRESH_INTERVAL_S = 30.0  # an unknown key id refetches the certs at most this often, seconds
CERTS_TIMEOUT_S = 10.0  # timeout of one certs fetch, seconds
_MAX_AGE = re.compile(r"max-age=(\d+)")

log = logging.getLogger(__name__)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class AuthSettings:
    """Who may call a service: expected audience, allowed emails, trusted issuers, certs URL."""

    audience: str
    allowed_emails: frozenset[str]
    issuers: tuple[str, ...] = GOOGLE_ISSUERS
    certs_url: str = GOOGLE_CERTS_URL
    disabled: bool = False

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        default_audience: str,
        default_allowed_emails: tuple[str, ...],
    ) -> AuthSettings:
        """Read the ``AUTH_*`` variables; the defaults are the calling service's own."""
        env = os.environ if environ is None else environ
        settings = cls(
            audience=env_str(env, "AUTH_AUDIENCE", default_audience),
            allowed_emails=frozenset(
                _csv(env.get("AUTH_ALLOWED_EMAILS", "")) or default_allowed_emails
            ),
            issuers=_csv(env.get("AUTH_ISSUERS", "")) or GOOGLE_ISSUERS,
            certs_url=env_str(env, "AUTH_CERTS_URL", GOOGLE_CERTS_URL),
            disabled=env_bool(env, "AUTH_DISABLED", False),
        )
        if not settings.disabled and not settings.allowed_emails:
            raise SettingsError("AUTH_ALLOWED_EMAILS is empty: no caller could ever be allowed")
        return settings


@dataclass(frozen=True)
class Caller:
    """A verified caller: its email, subject, issuer and every claim of its token."""

    email: str
    subject: str
    issuer: str
    claims: Mapping[str, Any] = field(repr=False)


class CertsCache:
    """The ``{kid: PEM}`` certs, fetched once and kept for the answer's ``max-age`` seconds.

    A token signed with a key id that is not cached refetches them (keys rotate),
    at most once every :data:`MIN_REFRESH_INTERVAL_S` seconds. When a refresh
    fails the certs already held are used; with none, :class:`CertsUnavailableError`.
    """

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        """Fetch from ``url`` with ``session`` (one is created when None)."""
        self.url = url
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires_at = 0.0  # time.monotonic() after which the certs are refetched
        self._fetched_at = -MIN_REFRESH_INTERVAL_S
        self.fetches = 0

    def get(self, key_id: str | None) -> dict[str, str]:
        """Return the certs, refreshed when stale or when ``key_id`` is unknown."""
        now = time.monotonic()
        with self._lock:
            stale = now >= self._expires_at
            unknown = key_id is not None and key_id not in self._certs
            if stale or (unknown and now - self._fetched_at >= MIN_REFRESH_INTERVAL_S):
                self._refresh(now)
            return self._certs

    def _refresh(self, now: float) -> None:
        self._fetched_at = now
        try:
            response = self._session.get(self.url, timeout=CERTS_TIMEOUT_S)
            response.raise_for_status()
            certs = response.json()
            if not isinstance(certs, dict) or not certs:
                raise ValueError("the answer is not a non-empty {kid: PEM} object")
        except (requests.RequestException, ValueError) as exc:
            if not self._certs:
                raise CertsUnavailableError(
                    f"cannot fetch the signing certs from {self.url}: {exc}"
                ) from None
            log.warning("certs refresh from %s failed, keeping the cached ones: %s", self.url, exc)
            self._expires_at = now + MIN_REFRESH_INTERVAL_S
            return
        self.fetches += 1
        self._certs = {str(kid): str(pem) for kid, pem in certs.items()}
        match = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
        self._expires_at = now + (float(match.group(1)) if match else DEFAULT_CERTS_MAX_AGE_S)


class CallerVerifier:
    """Verifies ``Authorization`` headers against one audience, allow-list and issuer set."""

    def __init__(
        self,
        settings: AuthSettings,
        certs: CertsCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Verify as ``settings`` say; ``certs`` defaults to a cache of ``settings.certs_url``.

        ``clock`` gives the wall-clock time in seconds since the epoch (tests pass
        their own) and decides how long a verified token is remembered.
        """
        self.settings = settings
        self._clock = clock
        self.certs = certs or CertsCache(settings.certs_url)
        # Tokens verified already, with the clock time until which each stays valid:
        # the queue sends one token many times, and a signature check costs CPU.
        self._verified: dict[str, tuple[Caller, float]] = {}

    def verify(self, authorization: str | None) -> Caller:
        """Return the verified caller of a request with this ``Authorization`` header.

        Raises :class:`MissingTokenError` or :class:`InvalidTokenError` (401),
        :class:`ForbiddenCallerError` (403) or :class:`CertsUnavailableError` (503).
        """
        token = _bearer_token(authorization)
        cached = self._verified.get(token)
        if cached is not None and self._clock() <= cached[1]:
            return cached[0]
        caller = self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()  # many distinct callers: start over rather than grow
        self._verified[token] = (caller, float(caller.claims["exp"]) + CLOCK_SKEW_S)
        return caller

    def _verify(self, token: str) -> Caller:
        try:
            key_id = jwt.decode_header(token).get("kid")
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise InvalidTokenError(f"the bearer token is not a JWT: {exc}") from None
        certs = self.certs.get(key_id if isinstance(key_id, str) else None)
        try:
            claims = jwt.decode(
                token,
                certs=certs,
                audience=self.settings.audience,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise InvalidTokenError(f"the token does not verify: {exc}") from None
        issuer = claims.get("iss")
        if issuer not in self.settings.issuers:
            trusted = ", ".join(self.settings.issuers)
            raise InvalidTokenError(f"issuer {issuer!r} is not trusted (trusted: {trusted})")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise ForbiddenCallerError("the token carries no verified email")
        if email not in self.settings.allowed_emails:
            raise ForbiddenCallerError(f"{email} is not allowed to call this service")
        return Caller(
            email=email, subject=str(claims.get("sub", "")), issuer=str(issuer), claims=claims
        )


def _bearer_token(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise MissingTokenError("no Authorization header; expected 'Bearer <OIDC token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingTokenError("the Authorization header is not 'Bearer <OIDC token>'")
    return token.strip()


def build_verifier(settings: AuthSettings, service: str) -> CallerVerifier | None:
    """Return the service's verifier, or None (with a start-up warning) when disabled."""
    if settings.disabled:
        log.warning(
            "AUTH_DISABLED is set: %s accepts requests from anyone; never do this in production",
            service,
            extra={"service": service},
        )
        return None
    return CallerVerifier(settings)
