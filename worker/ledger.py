"""The per-(order, action) ledger: claims with a lease, then done or failed, exactly once.

``orders/{orderId}/ledger/{action}`` is created by the first delivery as a
*claim* (must-not-exist precondition) that lives for a short lease (seconds),
renewed by the process's :class:`worker.heartbeat.Heartbeats` while the action
runs. While the claim is live, another delivery is told to come back later
(409 Conflict); once the entry is ``done`` (or ``failed``) every delivery is
answered at once. A claim whose lease has passed, left by a delivery that
crashed, is taken over with a precondition on the update time read, so two
deliveries never both take it. Every later write of the owner (renewal, done,
failed, release) carries a precondition on the update time of its own last
write: a delivery that lost its claim can change nothing. An action whose
whole effect is in its commit needs no claim written beforehand
(:meth:`Ledger.defer`): its commit writes the claim with the outcome, on
condition that the entry is still as read (created if it was missing).
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.api_core import exceptions as gexc

from orders.clock import Clock, utc_now
from orders.contract import TaskPayload
from worker.delivery import Delivery
from worker.documents import DELETE_FIELD, SERVER_TIMESTAMP, Doc, DocRef, Store, Writes
from worker.errors import ClaimHeldError, TransientTaskError

CLAIM_ATTEMPTS = 5  # reads and writes of one claim before answering 503


class LedgerState(StrEnum):
    """State of a ledger entry."""

    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


class Standing(StrEnum):
    """Where a delivery's claim stands after one of its commits was refused."""

    HELD = "held"  # still this delivery's: the refusal was about something else
    DONE = "done"  # this delivery's commit landed; its answer was lost
    LOST = "lost"  # another delivery took it over, or it is gone
    UNREAD = "unread"  # the entry a blind claim assumed missing exists: read and judge it
    DONE_ELSEWHERE = "done_elsewhere"  # another delivery's commit recorded the action done
    FAILED_ELSEWHERE = "failed_elsewhere"  # another delivery recorded it failed


@dataclass
class Claim:
    """A live claim this delivery holds: the precondition of its later writes.

    ``update_time`` is that of this delivery's last write of the entry; a renewal
    (while ``renewing``) changes it, under ``lock``.
    """

    ref: DocRef  # the ledger entry
    claim_id: str
    update_time: dt.datetime | None  # None: a deferred claim on a missing entry
    attempts: int
    # A deferred claim's fields, not written yet: the commit that settles the
    # action writes them (None: the claim was written).
    deferred: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    blind: bool = False  # deferred on an entry assumed missing, not read
    renewing: bool = False  # a heartbeat keeps it alive
    lost: bool = False  # a renewal found it taken over or gone


@dataclass(frozen=True)
class Settled:
    """An entry that is already ``done`` or ``failed`` (with its recorded reason)."""

    state: LedgerState
    error: str = ""


class Ledger:
    """Claims, finishes, fails and releases ledger entries in one Firestore store."""

    def __init__(self, store: Store, lease_s: float, clock: Clock | None = None) -> None:
        """Claims live ``lease_s`` seconds from their last renewal, by ``clock`` (UTC now)."""
        self._store = store
        self.lease_s = lease_s
        self._clock = clock or utc_now

    def claim(
        self,
        ref: DocRef,
        claim_id: str,
        payload: TaskPayload,
        delivery: Delivery,
    ) -> Claim | Settled:
        """Claim the entry for ``claim_id``, or tell that it is settled.

        Raises :class:`ClaimHeldError` when another delivery's claim is live.
        """
        try:
            return self._create(ref, claim_id, payload, delivery)
        except gexc.AlreadyExists:
            pass
        for _ in range(CLAIM_ATTEMPTS):
            snapshot = self._store.get(ref)
            if not snapshot.exists:  # released meanwhile
                try:
                    return self._create(ref, claim_id, payload, delivery)
                except gexc.AlreadyExists:
                    continue
            judged = self._judge(snapshot, claim_id, payload, delivery)
            if not isinstance(judged, dict):
                return judged
            writes = self._store.writes()
            writes.update(ref, judged, last_update_time=snapshot.update_time)
            try:
                (result,) = self._store.commit(writes)
            except gexc.FailedPrecondition:
                continue  # another delivery took it over first: look again
            return Claim(ref, claim_id, result.update_time, judged["attempts"])
        raise TransientTaskError(f"ledger entry {ref.path} kept changing while being claimed")

    def defer(
        self, snapshot: Doc, claim_id: str, payload: TaskPayload, delivery: Delivery
    ) -> Claim | Settled:
        """Claim the entry read as ``snapshot`` without writing, or tell that it is settled.

        For an action whose whole effect is in its commit: that commit writes
        the claim with the outcome, on condition that the entry is still as
        read (missing: created), so a racing delivery's commit is refused.
        Raises :class:`ClaimHeldError` when another delivery's claim is live.
        """
        if not snapshot.exists:
            fields = self._claim_fields(claim_id, payload, delivery, 1)
            return Claim(snapshot.ref, claim_id, None, 1, deferred=fields)
        judged = self._judge(snapshot, claim_id, payload, delivery)
        if not isinstance(judged, dict):
            return judged
        return Claim(
            snapshot.ref, claim_id, snapshot.update_time, judged["attempts"], deferred=judged
        )

    def assume_missing(
        self, ref: DocRef, claim_id: str, payload: TaskPayload, delivery: Delivery
    ) -> Claim:
        """Claim an entry assumed missing, without reading it (a *blind* deferred claim).

        For an action no delivery has recorded anything for: its commit creates
        the entry (must not exist). If that is refused because the entry exists,
        :meth:`standing` says :attr:`Standing.UNREAD`: read it and :meth:`defer`.
        """
        fields = self._claim_fields(claim_id, payload, delivery, 1)
        return Claim(ref, claim_id, None, 1, deferred=fields, blind=True)

    def _judge(
        self, snapshot: Doc, claim_id: str, payload: TaskPayload, delivery: Delivery
    ) -> Claim | Settled | dict[str, Any]:
        """Judge an existing entry: settled, our own claim, or the fields that take it over.

        Raises :class:`ClaimHeldError` when another delivery's claim is live.
        """
        entry = snapshot.fields
        state = entry.get("state")
        retry_failed = state == LedgerState.FAILED and payload.generation > int(
            entry.get("generation", 0)
        )  # a re-run of a failed order (the next generation) tries the action again
        if state in (LedgerState.DONE, LedgerState.FAILED) and not retry_failed:
            return Settled(LedgerState(state), str(entry.get("error", "")))
        attempts = int(entry.get("attempts", 0)) + 1
        if entry.get("claimId") == claim_id:
            return Claim(snapshot.ref, claim_id, snapshot.update_time, attempts - 1)
        # A failed entry is held by nobody: its old lease does not count.
        remaining_s = 0.0 if retry_failed else self._remaining_s(entry.get("leaseUntil"))
        if remaining_s > 0:
            raise ClaimHeldError(
                f"another delivery ({entry.get('cloudTaskName', '?')}, claim "
                f"{entry.get('claimId', '?')}) holds the action for {remaining_s:.1f} s more",
                retry_after_s=max(1, math.ceil(remaining_s)),
            )
        fields = self._claim_fields(claim_id, payload, delivery, attempts)
        fields["takenOverFrom"] = entry.get("claimId", "")
        if retry_failed:
            fields["error"] = DELETE_FIELD
        return fields

    def standing(self, claim: Claim, snapshot: Doc) -> Standing:
        """Tell where ``claim`` stands by its entry read now (``snapshot``).

        Held, done by this delivery, settled by another, lost, or (a blind
        claim's) an entry never read. Done by this delivery means a commit
        landed whose answer was lost (its retry was then refused, since the
        entry had changed).
        """
        entry = snapshot.fields
        if entry.get("claimId") != claim.claim_id:
            if claim.deferred is not None and snapshot.update_time == claim.update_time:
                return Standing.HELD  # a deferred claim's entry is still as it was read
            if entry.get("state") == LedgerState.DONE.value:
                return Standing.DONE_ELSEWHERE  # a racing delivery's commit won
            if claim.blind and snapshot.exists:
                return Standing.UNREAD
            if entry.get("state") == LedgerState.FAILED.value:
                return Standing.FAILED_ELSEWHERE
            return Standing.LOST  # taken over after the lease passed
        if entry.get("state") == LedgerState.CLAIMED.value:
            return Standing.HELD
        if entry.get("state") == LedgerState.DONE.value:
            return Standing.DONE
        return Standing.LOST

    def finish(self, writes: Writes, claim: Claim) -> None:
        """Add to ``writes`` the update that marks the claimed entry done.

        The entry already names the delivery (task name, retry and execution
        counts): the claim wrote them.
        """
        self._settle(
            writes, claim, {"state": LedgerState.DONE.value, "completedAt": SERVER_TIMESTAMP}
        )

    def fail(self, writes: Writes, claim: Claim, reason: str) -> None:
        """Add to ``writes`` the update that marks the claimed entry failed for ``reason``."""
        self._settle(
            writes,
            claim,
            {"state": LedgerState.FAILED.value, "error": reason, "failedAt": SERVER_TIMESTAMP},
        )

    def _settle(self, writes: Writes, claim: Claim, outcome: dict[str, Any]) -> None:
        """Add the write of ``outcome``, conditional on the claim (a deferred one: written too)."""
        if claim.deferred is None:
            writes.update(claim.ref, outcome, last_update_time=claim.update_time)
        elif claim.update_time is None:
            writes.create(claim.ref, {**claim.deferred, **outcome})
        else:
            writes.update(
                claim.ref, {**claim.deferred, **outcome}, last_update_time=claim.update_time
            )

    def release(self, claim: Claim) -> bool:
        """Delete the claim (still ours) so a retry need not wait for the lease; never raises."""
        if claim.deferred is not None:
            return True  # nothing was written
        writes = self._store.writes()
        writes.delete(claim.ref, last_update_time=claim.update_time)
        try:
            self._store.commit(writes)
        except (gexc.GoogleAPICallError, gexc.RetryError):
            return False  # it expires with its lease
        return True

    def renew(self, claim: Claim) -> bool:
        """Extend ``claim``'s lease by :attr:`lease_s` from now, if it is still ours.

        Returns False (and marks it lost) when it was taken over or is gone;
        raises the API's error when Firestore could not be reached. The caller
        holds ``claim.lock``.
        """
        if claim.lost:
            return False
        writes = self._store.writes()
        lease_until = self._clock() + dt.timedelta(seconds=self.lease_s)
        writes.update(claim.ref, {"leaseUntil": lease_until}, last_update_time=claim.update_time)
        try:
            (result,) = self._store.commit(writes)
        except (gexc.FailedPrecondition, gexc.NotFound):
            claim.lost = True
            return False
        claim.update_time = result.update_time
        return True

    def _create(
        self, ref: DocRef, claim_id: str, payload: TaskPayload, delivery: Delivery
    ) -> Claim:
        """Create the entry as this delivery's first claim; AlreadyExists if there is one."""
        writes = self._store.writes()
        writes.create(ref, self._claim_fields(claim_id, payload, delivery, 1))
        (result,) = self._store.commit(writes)
        return Claim(ref, claim_id, result.update_time, 1)

    def _claim_fields(
        self, claim_id: str, payload: TaskPayload, delivery: Delivery, attempts: int
    ) -> dict[str, Any]:
        lease_until = self._clock() + dt.timedelta(seconds=self.lease_s)
        return {
            "state": LedgerState.CLAIMED.value,
            "claimId": claim_id,
            "leaseUntil": lease_until,
            "claimedAt": SERVER_TIMESTAMP,
            "attempts": attempts,
            "generation": payload.generation,
            "runId": payload.run_id,
            **delivery.log_fields(),
        }

    def _remaining_s(self, lease_until: Any) -> float:
        """Return the seconds left on a lease (0 or less when it has passed or is unreadable)."""
        if not isinstance(lease_until, dt.datetime):
            return 0.0
        return (lease_until - self._clock()).total_seconds()
