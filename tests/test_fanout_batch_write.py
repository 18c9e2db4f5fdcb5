"""Marking's raw BatchWrite (fanout.batch_write) against the Firestore emulator."""

from __future__ import annotations

import datetime as dt

import pytest
from google.cloud import firestore
from google.rpc import code_pb2

from fanout.batch_write import BatchWriter
from fanout.errors import MarkingError


def test_an_update_sets_nested_fields_and_server_time_under_the_read_time_precondition(
    db: firestore.Client, project: str
) -> None:
    ref = db.collection("orders").document("o-1")
    ref.set({"status": "pending", "fanout": {"keep": "me"}, "other": 1})
    snapshot = ref.get()
    writer = BatchWriter(project)
    request = writer.request()
    update = {
        "status": "queued",
        "fanout.runId": "run-1",
        "fanout.generation": 2,
        "fanout.queuedAt": firestore.SERVER_TIMESTAMP,
    }
    writer.add_update(request, snapshot, update)
    assert [s.code for s in writer.write(request)] == [code_pb2.OK]
    stored = ref.get().to_dict() or {}
    assert stored["status"] == "queued" and stored["other"] == 1
    assert stored["fanout"]["keep"] == "me"  # fields the update does not name stay
    assert (stored["fanout"]["runId"], stored["fanout"]["generation"]) == ("run-1", 2)
    assert isinstance(stored["fanout"]["queuedAt"], dt.datetime)

    stale = writer.request()
    writer.add_update(stale, snapshot, {"status": "failed"})  # read before the write above
    assert [s.code for s in writer.write(stale)] == [code_pb2.FAILED_PRECONDITION]
    assert ref.get().get("status") == "queued"
    writer.close()


def test_what_marking_cannot_write_is_refused_by_name(db: firestore.Client, project: str) -> None:
    ref = db.collection("orders").document("o-2")
    ref.set({"status": "pending"})
    writer = BatchWriter(project)
    with pytest.raises(MarkingError, match=r"'fanout\.a b'"):
        writer.add_update(writer.request(), ref.get(), {"fanout.a b": 1})
    with pytest.raises(MarkingError, match=r"'fanout\.items' holds a list"):
        writer.add_update(writer.request(), ref.get(), {"fanout.items": [1]})
    writer.close()
