"""Perform one action of one order exactly once, under redelivery and racing deliveries.

1. Read the order (its items and customer do not change after creation) with
   the ledger entry ``orders/{id}/ledger/{action}``: an action the order
   records done answers 200 at once, a done entry too, a live claim of
   another delivery 409 Conflict. By default no claim is written now: the
   commit writes it with the outcome, on condition that the entry is still as
   read (:meth:`Ledger.defer`), so of two racing deliveries one commits. An
   action that POSTs an outbox effect may POST twice then, with the same
   ``Idempotency-Key``, which the receiver uses to act once. With
   ``WORKER_CLAIM_BEFORE_POST`` such an action claims the entry first (a
   commit, :meth:`Ledger.claim`), so a racing delivery gets 409 instead.
2. Run the action, a written claim's lease renewed meanwhile (:mod:`worker.heartbeat`):
   it adds its writes to one commit (stock with preconditions on what it read)
   and may deliver an outbox effect with its idempotency key.
3. Commit, atomically: the action's writes, the ledger entry ``done`` (only if
   the claim is still ours) and ``actions.{action}`` on the order. A refused
   precondition (stock, or an order the action guards, changed meanwhile) runs
   the action again on fresh reads; a refusal because our own commit landed
   and its retry came back refused counts as done.
4. The commit also increments the order's ``actionsDone`` and reads back the
   result (a transform result, no extra read). When the order read in 1 shows
   every other action done, the commit also marks it ``completed``, provided
   the order has not changed since (if it has, cancelled say, the action is
   recorded without completing); otherwise the commit that brought the count
   to the number of actions marks it in one more write, after checking the
   status. A delivery that finds its action already done checks the order
   again (a read), so that a failure between the commit and that write heals
   on the queue's retry.

A permanent failure is written on the ledger entry and the order's action; a
transient one releases the claim and leaves nothing else behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc

from orders.contract import TaskPayload
from orders.schema import (
    ACTIONS,
    LEDGER,
    ORDERS,
    ActionState,
    OrderStatus,
    action_done,
    action_untouched,
)
from worker.actions import POSTING, REGISTRY, ActionContext, OrderGuard
from worker.actions.confirmation import KIND as EMAIL
from worker.actions.warehouse import KIND as WAREHOUSE
from worker.config import WorkerConfig
from worker.delivery import Delivery
from worker.documents import SERVER_TIMESTAMP, Doc, DocRef, Increment, Store, integer_result
from worker.errors import ClaimHeldError, PermanentTaskError, TransientTaskError
from worker.heartbeat import Heartbeats
from worker.ledger import Claim, Ledger, LedgerState, Settled, Standing
from worker.order_writes import (
    ORDER_WRITE_ATTEMPTS,
    TRANSIENT_ERRORS,
    action_path,
    is_document_id,
    update_order_as_read,
)
from worker.outbox import Outbox
from worker.sku_locks import StripedLocks

log = logging.getLogger(__name__)

ACTIONS_DONE = "actionsDone"  # on the order: how many actions are done, counted by the commits
COMMIT_ATTEMPTS = 8  # optimistic runs of an action before answering 503
CONFLICT_PAUSE_S = 0.05  # longest random pause before running an action again, seconds
_COMPLETABLE = frozenset({OrderStatus.PENDING.value, OrderStatus.QUEUED.value})


class Outcome(StrEnum):
    """What a delivery did."""

    DONE = "done"
    ALREADY_DONE = "already_done"
    ALREADY_FAILED = "already_failed"


class Performer:
    """Runs actions against one Firestore client, built once per process."""

    def __init__(self, store: Store, config: WorkerConfig) -> None:
        """Use ``store`` for every delivery, with the config's lease, targets and timeouts."""
        self._store = store
        self._ledger = Ledger(store, config.lease_s)
        self._heartbeats = Heartbeats(self._ledger, config.heartbeat_s)
        targets = {EMAIL: config.mailer_url, WAREHOUSE: config.warehouse_url}
        self._outbox = Outbox(store, targets, config.delivery_timeout_s)
        self._locks = StripedLocks()
        self._lock_timeout_s = config.rpc_timeout_s
        # The actions that write their claim before running (the rest: with their outcome).
        self._claim_first = POSTING if config.claim_before_post else frozenset()

    def perform(self, payload: TaskPayload, delivery: Delivery) -> Outcome:
        """Perform ``payload``'s action once; raise Permanent- or TransientTaskError otherwise."""
        if payload.action not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise PermanentTaskError(f"unknown action {payload.action!r}; known actions: {known}")
        if not is_document_id(payload.order_id):
            raise PermanentTaskError(f"orderId {payload.order_id!r} is not a Firestore document id")
        order_ref = self._store.document(ORDERS, payload.order_id)
        try:
            return self._perform(order_ref, payload, delivery)
        except TRANSIENT_ERRORS as exc:
            raise TransientTaskError(f"Firestore is busy or unavailable: {exc}") from exc
        except gexc.InvalidArgument as exc:  # a request Firestore will never accept
            raise PermanentTaskError(f"Firestore refused the request for good: {exc}") from exc

    def _perform(self, order_ref: DocRef, payload: TaskPayload, delivery: Delivery) -> Outcome:
        # The order first: a redelivery of a done action then costs one read and no
        # write, and a missing order leaves no claim behind. Its own fields (items,
        # customer) do not change after creation, so this read serves the action.
        ledger_ref = order_ref.collection(LEDGER).document(payload.action)
        claim_id = _claim_id()
        snapshot = self._store.get(order_ref)
        if not snapshot.exists:
            raise PermanentTaskError(f"order {payload.order_id!r} does not exist")
        if action_done(snapshot.fields, payload.action):
            self._complete_order_if_done(order_ref)
            return Outcome.ALREADY_DONE
        claimed: Claim | Settled
        if payload.action in self._claim_first:
            claimed = self._ledger.claim(ledger_ref, claim_id, payload, delivery)
        elif action_untouched(snapshot.fields, payload.action):
            # No delivery has recorded anything for it, so in all likelihood it has no
            # entry: its commit creates one (must not exist), with no read first.
            claimed = self._ledger.assume_missing(ledger_ref, claim_id, payload, delivery)
        else:  # failed or dead-lettered before: its entry decides
            claimed = self._ledger.defer(self._store.get(ledger_ref), claim_id, payload, delivery)
        if isinstance(claimed, Settled):
            return self._settled(claimed, order_ref)
        guard = OrderGuard()
        for _ in range(COMMIT_ATTEMPTS):  # an action guarding the order reads it afresh each run
            try:
                done, completed = self._run(snapshot, payload, delivery, claimed, guard)
            except (gexc.FailedPrecondition, gexc.AlreadyExists):
                # A precondition refused the commit. Most often stock (or a guarded
                # order) changed since it was read: go again after a short pause, on
                # fresh reads. But our lease may have passed and another delivery
                # taken the claim over (then stop: the new owner finishes), or our own
                # commit may have landed and its retry been refused (then it is done).
                entry = self._store.get(ledger_ref)
                standing = self._ledger.standing(claimed, entry)
                if standing is Standing.UNREAD:  # the entry assumed missing exists: judge it
                    claimed = self._ledger.defer(entry, claim_id, payload, delivery)
                    if isinstance(claimed, Settled):
                        return self._settled(claimed, order_ref)
                    continue
                if standing in (Standing.DONE, Standing.DONE_ELSEWHERE):
                    self._complete_order_if_done(order_ref)
                    return Outcome.DONE if standing is Standing.DONE else Outcome.ALREADY_DONE
                if standing is Standing.FAILED_ELSEWHERE:
                    return Outcome.ALREADY_FAILED
                if standing is Standing.LOST:
                    raise ClaimHeldError(
                        f"order {payload.order_id}: {payload.action} was taken over by "
                        "another delivery (this one's lease passed, or its commit lost a race)"
                    ) from None
                time.sleep(random.uniform(0.0, CONFLICT_PAUSE_S))
                continue
            except PermanentTaskError as exc:
                self._record_failure(guard.fresh or snapshot, payload, claimed, str(exc))
                raise PermanentTaskError(str(exc), recorded=True) from exc
            except BaseException:  # transient, or a bug: nothing was committed, let go
                self._ledger.release(claimed)
                raise
            if done == len(ACTIONS) and not completed:  # the last action, done by a race winner
                self._complete_order_if_done(order_ref)  # checks the status, with a precondition
            return Outcome.DONE
        self._ledger.release(claimed)
        raise TransientTaskError(f"order {payload.order_id}: {payload.action} kept conflicting")

    def _settled(self, settled: Settled, order_ref: DocRef) -> Outcome:
        """Answer for an action its ledger entry shows settled (completing a done order)."""
        if settled.state is LedgerState.FAILED:
            return Outcome.ALREADY_FAILED
        self._complete_order_if_done(order_ref)
        return Outcome.ALREADY_DONE

    def _run(
        self,
        snapshot: Doc,
        payload: TaskPayload,
        delivery: Delivery,
        claim: Claim,
        guard: OrderGuard,
    ) -> tuple[int, bool]:
        """Run the action, commit it with the ledger entry and the order's record.

        Return how many of the order's actions are done after this commit, and
        whether the commit also completed the order. When the action asks for
        it (``guard``), the commit is refused if the order changed since
        ``snapshot``, or since the action read it again (cancelled meanwhile, say).
        """
        order = snapshot.fields
        _refuse_cancelled(order, payload)
        with contextlib.ExitStack() as held:  # locks the action takes, until the commit returns
            writes = self._store.writes()
            with self._heartbeats.keep(claim):
                REGISTRY[payload.action](
                    ActionContext(
                        writes,
                        self._store,
                        order,
                        payload,
                        self._outbox,
                        self._locks,
                        held,
                        self._lock_timeout_s,
                        guard,
                    )
                )
            if guard.fresh is not None:  # the action read the order again, just now
                snapshot, order = guard.fresh, guard.fresh.fields
                if not snapshot.exists:  # deleted meanwhile: the queue's retry finds it gone
                    raise TransientTaskError(f"order {payload.order_id!r} was deleted meanwhile")
                _refuse_cancelled(order, payload)
            self._ledger.finish(writes, claim)  # on condition that the claim is still ours
            prefix = action_path(payload.action)
            others = [name for name in ACTIONS if name != payload.action]
            completion: dict[str, Any] = {}
            if order.get("status") in _COMPLETABLE and all(action_done(order, a) for a in others):
                # Every other action was done when the order was read: complete it in this commit.
                completion = {
                    "status": OrderStatus.COMPLETED.value,
                    "completedAt": SERVER_TIMESTAMP,
                }
            record = {
                f"{prefix}.state": ActionState.DONE.value,
                f"{prefix}.completedAt": SERVER_TIMESTAMP,
                f"{prefix}.attempts": claim.attempts,
                f"{prefix}.generation": payload.generation,
                f"{prefix}.taskName": delivery.task_name,
                ACTIONS_DONE: Increment(1),
            }
            # Completing, or an action that asked, needs the order as it was read.
            unchanged = guard.wanted or bool(completion)
            writes.update(
                snapshot.ref,
                {**record, **completion},
                last_update_time=snapshot.update_time if unchanged else None,
            )
            try:
                results = self._store.commit(writes)
            except gexc.FailedPrecondition:
                if guard.wanted or not completion:
                    raise
                # The order changed since it was read (cancelled, say) and the action's
                # effect has left: record it done without completing; the count and
                # the status check below decide about completion.
                writes.discard_last()
                writes.update(snapshot.ref, record)
                results = self._store.commit(writes)
                completion = {}
        return integer_result(results[-1]), bool(completion)

    def _record_failure(
        self, snapshot: Doc, payload: TaskPayload, claim: Claim, reason: str
    ) -> None:
        """Write a permanent failure on the ledger entry and the order (failed, unless done).

        The order's write is conditional on ``snapshot``: an order cancelled (or
        otherwise changed) since is read again, so its status is judged as it
        is, never overwritten from a stale read.
        """
        prefix = action_path(payload.action)
        record: dict[str, Any] = {
            f"{prefix}.state": ActionState.FAILED.value,
            f"{prefix}.lastError": reason,
            f"{prefix}.failedAt": SERVER_TIMESTAMP,
            f"{prefix}.attempts": claim.attempts,
        }
        for _ in range(ORDER_WRITE_ATTEMPTS):
            writes = self._store.writes()
            self._ledger.fail(writes, claim, reason)
            update = dict(record)
            if snapshot.fields.get("status") in _COMPLETABLE:
                update["status"] = OrderStatus.FAILED.value
            writes.update(snapshot.ref, update, last_update_time=snapshot.update_time)
            try:
                self._store.commit(writes)
                return
            except (gexc.FailedPrecondition, gexc.AlreadyExists):
                order = self._store.get(snapshot.ref)
                if not order.exists:
                    deleted = f"{reason}; and the order was deleted meanwhile"
                    raise TransientTaskError(deleted) from None
                if order.update_time != snapshot.update_time:
                    snapshot = order  # the order changed: judge its status again
                    continue
                raise TransientTaskError(
                    f"{reason}; but the claim was taken over before the failure was recorded"
                ) from None
        raise TransientTaskError(f"{reason}; but the order kept changing while it was recorded")

    def _complete_order_if_done(self, order_ref: DocRef) -> None:
        """Mark the order completed once every action is done; a no-op otherwise."""

        def completion(order: Doc) -> dict[str, Any] | None:
            if order.fields.get("status") not in _COMPLETABLE:
                return None
            if not all(action_done(order.fields, name) for name in ACTIONS):
                return None
            return {"status": OrderStatus.COMPLETED.value, "completedAt": SERVER_TIMESTAMP}

        if not update_order_as_read(self._store, order_ref, completion):
            raise TransientTaskError(f"order {order_ref.path} kept changing while being completed")


def _refuse_cancelled(order: dict[str, Any], payload: TaskPayload) -> None:
    """Raise a permanent failure when the order (as read) is cancelled."""
    if order.get("status") == OrderStatus.CANCELLED.value:
        raise PermanentTaskError(f"order {payload.order_id} is cancelled")


def _claim_id() -> str:
    """Return a unique id for one delivery's claim (pid: forked workers share random's state)."""
    return f"{os.getpid():x}-{random.getrandbits(96):024x}"
