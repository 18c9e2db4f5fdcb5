"""Interrupted runs: a ``running`` record whose run no longer holds the lease.

A run (each segment of it) holds the fan-out lease (:mod:`fanout.lease`) while
it pages orders, and writes its end state before it frees the lease. So a record
still ``running`` whose lease has expired, or is held by another run, belongs to
a run that crashed or was killed: it is marked ``interrupted``, keeping its last
progress and checkpoint, and ``fanout backfill --resume RUN_ID`` continues it.
The next run does this when it takes the lease, and so does ``fanout status``.
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from fanout.lease import LEASE_SCOPE, LEASES
from fanout.summary import RunState
from orders.clock import utc_now
from orders.schema import FANOUT_RUNS

log = logging.getLogger(__name__)

MAX_CHECKED = 50  # running records looked at per call


def mark_interrupted_runs(client: firestore.Client) -> list[str]:
    """Mark every ``running`` record without a live lease ``interrupted``; return their ids."""
    running = (
        client.collection(FANOUT_RUNS)
        .where(filter=firestore.FieldFilter("state", "==", RunState.RUNNING.value))
        .limit(MAX_CHECKED)
        .get()
    )
    if not running:
        return []
    lease = client.collection(LEASES).document(LEASE_SCOPE).get()
    holder = (lease.to_dict() or {}) if lease.exists else {}
    marked = []
    for snapshot in running:
        if _holds_live_lease(holder, snapshot.id):
            continue
        if _mark(client, snapshot):
            marked.append(snapshot.id)
    return marked


def _holds_live_lease(holder: dict[str, Any], run_id: str) -> bool:
    expires = holder.get("expiresAt")
    return holder.get("runId") == run_id and expires is not None and expires > utc_now()


def _mark(client: firestore.Client, snapshot: Any) -> bool:
    """Mark one record, unless it changed since it was read (its run is alive after all)."""
    record = snapshot.to_dict() or {}
    message = (
        f"interrupted: segment {record.get('segment', 0)} stopped without an end record "
        f"(its lease expired); continue with `fanout backfill --resume {snapshot.id}`"
    )
    option = client.write_option(last_update_time=snapshot.update_time)
    try:
        snapshot.reference.update(
            {
                "state": RunState.INTERRUPTED.value,
                "message": message,
                "interruptedAt": firestore.SERVER_TIMESTAMP,
            },
            option=option,
        )
    except (gexc.FailedPrecondition, gexc.NotFound):
        return False
    log.warning("fan-out run interrupted: %s", message, extra={"runId": snapshot.id})
    return True
