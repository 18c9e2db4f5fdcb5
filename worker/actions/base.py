"""What every action gets, and the order-reading helpers they share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orders.contract import TaskPayload
from orders.schema import ORDERS
from worker.documents import Doc, DocRef, Store, Writes
from worker.errors import PermanentTaskError
from worker.outbox import Outbox
from worker.sku_locks import StripedLocks


@dataclass
class OrderGuard:
    """Whether the action's commit must be refused if the order changed since it was read.

    ``fresh`` is the order as the action re-read it with its own documents
    (:meth:`ActionContext.read_with_order`), when it did: the commit's
    precondition is then on that read, not on the one made before the action.
    """

    fresh: Doc | None = None

    @property
    def wanted(self) -> bool:
        """True once the action has read the order to guard its commit."""
        return self.fresh is not None


@dataclass(frozen=True)
class ActionContext:
    """Everything an action may use.

    ``writes`` is the commit that also marks the action done in the ledger and on
    the order: whatever the action adds to it happens exactly when the action is
    recorded done, and never twice. Documents an action reads and then writes in
    it get a ``last_update_time`` precondition (their ``update_time``), so the
    commit is an optimistic transaction: if one changed since the read, the
    whole commit is refused and the delivery runs the action again. An action
    that reads documents other deliveries write often (a popular sku) first
    calls :meth:`serialize` on them, so deliveries in this process wait for each
    other instead of having their commits refused.
    """

    writes: Writes
    store: Store
    order: dict[str, Any]
    payload: TaskPayload
    outbox: Outbox
    locks: StripedLocks = field(default_factory=StripedLocks)
    held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    lock_timeout_s: float = 10.0  # longest wait for a lock, seconds
    guard: OrderGuard = field(default_factory=OrderGuard)

    def read_with_order(self, refs: Iterable[DocRef]) -> dict[str, Doc]:
        """Read ``refs`` and the order in one call, keyed by path; guard the commit by this read.

        The commit is then refused if the order changes after this read.
        Other deliveries of the same order record their actions on it while this
        one runs; a precondition on the order as read before the action would
        refuse the commit for those changes too (they leave the status alone).
        Reading it again with the action's own documents, just before the
        commit, narrows the window to the commit itself, for one more document
        in a read the action makes anyway. The status read here is checked
        again before the commit (a cancelled order then fails for good).
        """
        order_ref = self.store.document(ORDERS, self.payload.order_id)
        docs = self.store.get_all([order_ref, *refs])
        self.guard.fresh = docs[order_ref.path]
        return docs

    def serialize(self, keys: Iterable[str]) -> None:
        """Hold this process's locks on ``keys`` until the action's commit has returned.

        Call it once, before reading the documents the keys name. Raises
        :class:`TransientTaskError` when a lock is not free within ``lock_timeout_s``.
        """
        self.locks.hold(self.held, keys, self.lock_timeout_s)

    def send(self, kind: str, message: dict[str, Any]) -> None:
        """Record ``message`` in the outbox and deliver it with its idempotency key."""
        self.outbox.send(self.writes, self.payload, kind, message)


Action = Callable[[ActionContext], None]


def order_items(ctx: ActionContext) -> dict[str, int]:
    """Return the order's quantities by sku; a malformed item is a permanent failure."""
    totals: dict[str, int] = {}
    items = ctx.order.get("items")
    if not isinstance(items, list) or not items:
        raise PermanentTaskError(f"order {ctx.payload.order_id} has no items")
    for index, item in enumerate(items):
        sku = item.get("sku") if isinstance(item, dict) else None
        quantity = item.get("quantity") if isinstance(item, dict) else None
        if not isinstance(sku, str) or not sku or "/" in sku:
            raise PermanentTaskError(f"order {ctx.payload.order_id} item {index}: bad sku {sku!r}")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
            raise PermanentTaskError(
                f"order {ctx.payload.order_id} item {index}: quantity must be a positive integer"
            )
        totals[sku] = totals.get(sku, 0) + quantity
    return totals
