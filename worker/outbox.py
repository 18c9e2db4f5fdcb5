"""The outbox: effects that leave the system (e-mails, warehouse notifications).

Each effect is delivered by HTTP POST with an ``Idempotency-Key`` header
``{orderId}:{action}``, while the delivery holds the action's claim, and
recorded as the document ``outbox/{orderId}:{action}``, created with a
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

from enum import StrEnum
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from orders.contract import TaskPayload
from orders.schema import OUTBOX
from worker.errors import PermanentTaskError, TransientTaskError
from worker.store import SERVER_TIMESTAMP, Store, Writes

_RETRYABLE_HTTP = frozenset({408, 429})


class OutboxState(StrEnum):
    """State of an outbox document."""

    PENDING = "pending"
    DELIVERED = "delivered"


def outbox_key(order_id: str, action: str) -> str:
    """Return the idempotency key of an effect that leaves the system."""
    return f"{order_id}:{action}"


class Outbox:
    """Creates outbox documents and delivers them to their kind's target URL."""

    def __init__(self, store: Store, targets: dict[str, str], timeout_s: float) -> None:
        """Deliver kind ``k`` to ``targets[k]`` (none: stay pending); ``timeout_s`` s a POST."""
        self._store = store
        self._targets = targets
        self._timeout_s = timeout_s
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(pool_maxsize=64))
        self._session.mount("https://", HTTPAdapter(pool_maxsize=64))

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
            answer = self._session.post(
                url, json=body, headers={"Idempotency-Key": key}, timeout=self._timeout_s
            )
        except requests.RequestException as exc:
            raise TransientTaskError(f"{url} could not be reached: {exc}") from None
        if 200 <= answer.status_code < 300:
            return answer.status_code
        detail = f"{url} answered HTTP {answer.status_code}: {answer.text[:200]}"
        if answer.status_code >= 500 or answer.status_code in _RETRYABLE_HTTP:
            raise TransientTaskError(detail)
        raise PermanentTaskError(detail)
