"""Single flight: one lease document that a run must hold while it pages orders.

A run (or one segment of it: the first call, then each continuation) takes the
lease when it is free, expired, or handed to that very segment by the one
before; it renews the lease after every page. A crashed run stops renewing, so
its lease expires and the next run takes over. Every write carries a
precondition on the lease's ``update_time``; nothing is locked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from fanout.errors import LeaseHeldError, LeaseLostError
from orders.clock import Clock, utc_now
from orders.writes import unchanged_since, update_if_unchanged

LEASES = "fanout_leases"
LEASE_SCOPE = "orders"  # the lease document every fan-out run of the orders takes
ACQUIRE_ROUNDS = 5  # read-and-write rounds before a racing acquirer gives up


class RunLease:
    """The lease for one segment of one run, held for ``duration_s`` seconds at a time."""

    def __init__(
        self,
        client: firestore.Client,
        run_id: str,
        duration_s: float,
        scope: str = LEASE_SCOPE,
        clock: Clock | None = None,
    ) -> None:
        """Prepare the lease on ``fanout_leases/{scope}`` for run ``run_id``.

        ``clock`` gives the current UTC time (default: the real one); leases expire by it.
        """
        self._client = client
        self._clock = clock or utc_now
        self._ref = client.collection(LEASES).document(scope)
        self.run_id = run_id
        self.duration_s = duration_s
        self.segment = 0
        self._update_time: Any = None

    def acquire(self, segment: int) -> None:
        """Take the lease for ``segment`` of this run, or raise :class:`LeaseHeldError`."""
        self.segment = segment
        for _ in range(ACQUIRE_ROUNDS):
            snapshot = self._ref.get()
            fields = self._fields(self.duration_s)
            if not snapshot.exists:
                try:
                    self._update_time = self._ref.create(fields).update_time
                    return
                except gexc.AlreadyExists:
                    continue
            holder = snapshot.to_dict() or {}
            if not self._may_take(holder):
                raise LeaseHeldError(
                    f"run {holder.get('runId')} (segment {holder.get('segment')}) holds the "
                    f"fan-out lease until {holder.get('expiresAt')}; try again after that"
                )
            fields["handoffTo"] = firestore.DELETE_FIELD
            try:
                self._update_time = update_if_unchanged(
                    self._client, self._ref, fields, snapshot.update_time
                )
                return
            except (gexc.FailedPrecondition, gexc.NotFound):
                continue
        raise LeaseHeldError("other runs kept taking the fan-out lease; try again shortly")

    def renew(self) -> None:
        """Extend the lease by its duration; raise :class:`LeaseLostError` if it was taken."""
        self._write(self._fields(self.duration_s))

    def hand_off(self, next_segment: int, hold_s: float) -> None:
        """Keep the lease for ``hold_s`` seconds for this run's ``next_segment`` only."""
        self._write({**self._fields(hold_s), "handoffTo": next_segment})

    def release(self) -> None:
        """Give the lease up, unless someone else holds it by now."""
        option = unchanged_since(self._client, self._update_time)
        with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):
            self._ref.delete(option=option)

    def _may_take(self, holder: dict[str, Any]) -> bool:
        expires = holder.get("expiresAt")
        if expires is None or expires <= self._clock():
            return True
        return bool(holder.get("runId") == self.run_id and holder.get("handoffTo") == self.segment)

    def _fields(self, hold_s: float) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "segment": self.segment,
            "expiresAt": self._clock() + dt.timedelta(seconds=hold_s),
        }

    def _write(self, fields: dict[str, Any]) -> None:
        try:
            self._update_time = update_if_unchanged(
                self._client, self._ref, fields, self._update_time
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            raise LeaseLostError(
                f"run {self.run_id} lost the fan-out lease (it expired and was taken over); "
                "raise FANOUT_LEASE_SECONDS if pages take longer than that"
            ) from None
