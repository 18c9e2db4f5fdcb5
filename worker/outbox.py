"""The outbox: effects that leave the system (e-mails, warehouse notifications).

Each effect is delivered by HTTP POST with an ``Idempotency-Key`` header (see
:func:`outbox_key`), while the delivery holds the action's claim, and
recorded as the document ``outbox/{key}``, created with a
must-not-exist precondition in the commit that marks the action done: the
effect is recorded exactly once, together with the action. A receiver that
sees the same key twice (a retry after a lost answer, a commit that failed
after the POST, or a takeover of a crashed delivery's claim) can tell and
ignore the repeat. The key is the guarantee at the receiver in any design:
recording the effect ``pending`` before the POST would cost one more commit per
delivery and still leave a crash between the POST and the next write. A kind without a
target URL is recorded ``pending``, for a relay to send.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
import urllib.request
from enum import StrEnum
from typing import Any

import urllib3

from orders.contract import TaskPayload
from orders.schema import OUTBOX
from worker.documents import SERVER_TIMESTAMP, Store, Writes
from worker.errors import PermanentTaskError, TransientTaskError

_RETRYABLE_HTTP = frozenset({408, 429})
POOL_SIZE = 64  # kept-alive connections per target
MAX_KEY_CHARS = 1500  # an idempotency key, in (ASCII) characters: it names a Firestore document


class OutboxState(StrEnum):
    """State of an outbox document."""

    PENDING = "pending"
    DELIVERED = "delivered"


def outbox_key(order_id: str, action: str) -> str:
    """Return the idempotency key of an effect: ASCII, stable and one per (order, action).

    ``{percent-encoded order id}:{action}``: the order id's UTF-8 bytes, each
    byte other than ``A-Z a-z 0-9 - . _ ~`` written ``%XX`` (RFC 3986), so plain
    ids stay as they are and the encoding never emits ``:``. When that is longer
    than :data:`MAX_KEY_CHARS` (the key is also the outbox document's id, which
    Firestore caps at 1,500 bytes) the key is ``sha256={64 hex digits of the
    SHA-256 of the order id's UTF-8}:{action}``; ``=`` never appears in the
    percent-encoded form, so the two forms never meet.
    """
    encoded = urllib.parse.quote(order_id, safe="")
    if len(encoded) + 1 + len(action) <= MAX_KEY_CHARS:
        return f"{encoded}:{action}"
    return f"sha256={hashlib.sha256(order_id.encode()).hexdigest()}:{action}"


class Outbox:
    """Creates outbox documents and delivers them to their kind's target URL."""

    def __init__(self, store: Store, targets: dict[str, str], timeout_s: float) -> None:
        """Deliver kind ``k`` to ``targets[k]`` (none: stay pending); ``timeout_s`` s a POST."""
        self._store = store
        self._targets = targets
        self._timeout_s = timeout_s
        # urllib3 itself (requests' own transport): a POST costs half the CPU without
        # requests' per-call environment and netrc lookups; proxies are read once here.
        self._pools = {url: _pool_for(url) for url in targets.values() if url}

    def send(
        self,
        writes: Writes,
        payload: TaskPayload,
        kind: str,
        message: dict[str, Any],
    ) -> None:
        """Deliver the effect, then add its outbox document (must not exist) to ``writes``.

        Raises :class:`TransientTaskError` when the target is unreachable, times out
        or answers 5xx, 408 or 429, and :class:`PermanentTaskError` on another 4xx.
        """
        key = outbox_key(payload.order_id, payload.action)
        document: dict[str, Any] = {
            "kind": kind,
            "orderId": payload.order_id,
            "action": payload.action,
            "message": message,
        }
        url = self._targets.get(kind, "")
        if url:
            status = self._post(url, key, {"idempotencyKey": key, **document})
            document.update(
                state=OutboxState.DELIVERED.value,
                deliveredAt=SERVER_TIMESTAMP,
                deliveryStatus=status,
            )
        else:
            document["state"] = OutboxState.PENDING.value
        document["createdAt"] = SERVER_TIMESTAMP
        writes.create(self._store.document(OUTBOX, key), document)

    def _post(self, url: str, key: str, body: dict[str, Any]) -> int:
        try:
            answer = self._pools[url].request(
                "POST",
                url,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Idempotency-Key": key},
                timeout=self._timeout_s,
                retries=False,  # the queue retries the whole delivery
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientTaskError(f"{url} could not be reached: {exc}") from exc
        if 200 <= answer.status < 300:
            return answer.status
        text = answer.data[:200].decode("utf-8", errors="replace")
        detail = f"{url} answered HTTP {answer.status}: {text}"
        if answer.status >= 500 or answer.status in _RETRYABLE_HTTP:
            raise TransientTaskError(detail)
        raise PermanentTaskError(detail)


def _pool_for(url: str) -> urllib3.PoolManager:
    """Return the connection pool for ``url``: through the environment's proxy, if it has one."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, maxsize=POOL_SIZE)
    return urllib3.PoolManager(maxsize=POOL_SIZE)
