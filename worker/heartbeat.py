"""Heartbeats: a live delivery renews its claim's short lease while its action runs.

A claim lives a few seconds (``WORKER_LEASE_SECONDS``) from its last renewal,
so the claim of a delivery that crashed frees itself within seconds, while a
slow delivery that is alive keeps renewing it every ``WORKER_HEARTBEAT_SECONDS``
and keeps it. One thread per process renews every claim due, each on condition
that it is still ours (:meth:`worker.ledger.Ledger.renew`); a renewal that finds
the claim taken over marks it lost, and the delivery's final commit, conditional
on the claim's last update time, is then refused: the effect is not committed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from google.api_core import exceptions as gexc

from worker.ledger import Claim, Ledger

log = logging.getLogger(__name__)


class Heartbeats:
    """Renews the claims of this process's running actions every ``interval_s`` seconds."""

    def __init__(self, ledger: Ledger, interval_s: float) -> None:
        """Renew through ``ledger``; the thread starts with the first claim kept alive."""
        if not 0 < interval_s < ledger.lease_s:
            raise ValueError(
                f"the heartbeat interval ({interval_s} s) must be positive and shorter than "
                f"the claim lease ({ledger.lease_s} s)"
            )
        self._ledger = ledger
        self.interval_s = interval_s
        self._due: dict[int, tuple[float, Claim]] = {}  # id(claim): (monotonic due time, claim)
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def keep(self, claim: Claim) -> Iterator[None]:
        """Keep ``claim`` renewed for the duration of the block.

        On leaving, no renewal of it is under way any more: ``claim.update_time``
        is the last one, for the commit that follows.
        """
        if claim.deferred is not None:  # nothing written yet: nothing to renew
            yield
            return
        with claim.lock:
            claim.renewing = True
        with self._changed:
            self._due[id(claim)] = (time.monotonic() + self.interval_s, claim)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="claim-heartbeat", daemon=True
                )
                self._thread.start()
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._due.pop(id(claim), None)
            with claim.lock:  # waits for a renewal under way; none starts after
                claim.renewing = False

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [claim for when, claim in self._due.values() if when <= now]
                for claim in due:
                    self._due[id(claim)] = (now + self.interval_s, claim)
                if not due:
                    soonest = min((when for when, _ in self._due.values()), default=None)
                    self._changed.wait(None if soonest is None else soonest - now)
                    continue
            for claim in due:
                self._renew(claim)

    def _renew(self, claim: Claim) -> None:
        with claim.lock:
            if not claim.renewing:
                return  # its action ended meanwhile
            try:
                if not self._ledger.renew(claim):
                    log.warning("claim %s on %s was taken over", claim.claim_id, claim.ref.path)
            except (gexc.GoogleAPICallError, gexc.RetryError) as exc:  # again at the next beat
                log.warning("could not renew claim %s: %s", claim.claim_id, exc)
            except Exception:  # a bug: the thread keeps beating for the other claims
                log.exception("renewing claim %s failed", claim.claim_id)
