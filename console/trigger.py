"""Trigger a fan-out run the way Cloud Scheduler does: ``POST /fanout`` with an OIDC token.

In production the token is an ID token for the fanout's URL with the identity
of ``CONSOLE_TRIGGER_AS`` (Scheduler's account, which the fanout already
allows): the console's account impersonates it through the IAM Credentials API
(``google.auth.impersonated_credentials``; it needs
``roles/iam.serviceAccountOpenIdTokenCreator`` on that account). Without
``CONSOLE_TRIGGER_AS`` the console's own identity is used
(``google.oauth2.id_token.fetch_id_token``), which the fanout must then allow.
The local cloud passes a function minting tokens from its own issuer instead.

The call runs in a background thread: a run may take minutes, and its progress
is on the runs page meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import google.auth.transport.requests
import requests
from google.auth import impersonated_credentials
from google.oauth2 import id_token

from console.errors import TriggerError

log = logging.getLogger(__name__)

IdTokenSource = Callable[[str], str]  # audience -> an OIDC ID token for it
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def google_id_token(audience: str) -> str:
    """Return an ID token for ``audience`` from Application Default Credentials."""
    token: str = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    return token


def id_token_source(trigger_as: str) -> IdTokenSource:
    """Return where tokens come from: impersonating ``trigger_as``, or (empty) our own."""
    if not trigger_as:
        return google_id_token

    def impersonated(audience: str) -> str:
        source, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
        target = impersonated_credentials.Credentials(
            source_credentials=source, target_principal=trigger_as, target_scopes=[CLOUD_PLATFORM]
        )
        credentials = impersonated_credentials.IDTokenCredentials(
            target, target_audience=audience, include_email=True
        )
        credentials.refresh(google.auth.transport.requests.Request())
        return str(credentials.token)

    return impersonated


@dataclass(frozen=True)
class TriggerOutcome:
    """How the last triggered call ended: when, the answer's status and a short text."""

    at: dt.datetime
    status: int
    detail: str


class FanoutTrigger:
    """Calls the fanout's ``POST /fanout``, one call at a time, in the background."""

    def __init__(self, fanout_url: str, tokens: IdTokenSource, timeout_s: float) -> None:
        """Call ``fanout_url`` with tokens from ``tokens``, waiting up to ``timeout_s`` s."""
        self.fanout_url = fanout_url
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._busy = False
        self.last: TriggerOutcome | None = None

    @property
    def busy(self) -> bool:
        """Whether a triggered call is still waiting for its answer."""
        return self._busy

    def start(self) -> None:
        """Start one call; :class:`TriggerError` if none can be made or one is running."""
        if not self.fanout_url:
            raise TriggerError("no fanout to call: start the console with FANOUT_URL set")
        with self._lock:
            if self._busy:
                raise TriggerError("a run triggered from here is still running; wait for it")
            self._busy = True
        threading.Thread(target=self._call, name="console-trigger", daemon=True).start()

    def _call(self) -> None:
        try:
            token = self._tokens(self.fanout_url)
            answer = requests.post(
                f"{self.fanout_url}/fanout",
                headers={"Authorization": f"Bearer {token}", "User-Agent": "order-fanout-console"},
                timeout=self._timeout_s,
            )
            self.last = TriggerOutcome(_now(), answer.status_code, answer.text[:300])
        except Exception as exc:  # shown on the page: the call is the only thing that failed
            log.warning("triggering a run failed: %s", exc)
            self.last = TriggerOutcome(_now(), 0, f"{type(exc).__name__}: {exc}")
        finally:
            self._busy = False


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
