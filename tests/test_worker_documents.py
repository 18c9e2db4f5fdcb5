"""The worker's Firestore access: the official client, its production path, its retries."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core import grpc_helpers
from google.cloud import firestore
from google.oauth2 import credentials as oauth2

from orders.clients import firestore_client
from orders.settings import CloudSettings
from orders.writes import Writes, is_repeatable
from worker.documents import SERVER_TIMESTAMP, Increment, Store, build_store, integer_result

PRODUCTION_TARGET = "firestore.googleapis.com:443"
SOME_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # an update time, for preconditions


@pytest.fixture
def store(project: str) -> Iterator[Store]:
    built = build_store(firestore_client(CloudSettings(project=project)), 5.0)
    yield built
    built.close()


class FakeFirestore:
    """A gRPC server answering every call with one status; it records what it received."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code
        self.calls: list[tuple[str, dict[str, str]]] = []  # (method, metadata)
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(4))
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(details.method)
        metadata = dict(details.invocation_metadata)  # type: ignore[arg-type]

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls.append((method, metadata))
            context.abort(self.code, "the fake answers this to everything")
            return b""

        if method.endswith("BatchGetDocuments"):
            return grpc.unary_stream_rpc_method_handler(answer)
        return grpc.unary_unary_rpc_method_handler(answer)

    def methods(self) -> list[str]:
        with self._lock:
            return [method.rsplit("/", 1)[-1] for method, _ in self.calls]

    def __enter__(self) -> FakeFirestore:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)


def test_create_of_an_existing_document_is_refused_and_changes_nothing(
    store: Store, db: firestore.Client
) -> None:
    ref = store.document("things", "t1")
    writes = store.writes()
    writes.create(ref, {"n": 1, "at": SERVER_TIMESTAMP})
    (created,) = store.commit(writes)
    again = store.writes()
    again.create(ref, {"n": 2})
    with pytest.raises(gexc.AlreadyExists):
        store.commit(again)
    snapshot = db.document("things/t1").get()
    assert snapshot.get("n") == 1 and snapshot.update_time == created.update_time


def test_an_update_on_a_stale_update_time_is_refused_and_the_whole_commit_with_it(
    store: Store, db: firestore.Client
) -> None:
    ref, other = store.document("things", "t2"), store.document("things", "t3")
    db.document("things/t3").set({"n": 0})
    read = db.document("things/t2")
    read.set({"n": 0})
    stale = store.get(ref)
    read.update({"n": 5})  # someone else writes it after our read
    writes = store.writes()
    writes.update(ref, {"n": 1}, last_update_time=stale.update_time)
    writes.update(other, {"n": 1})
    with pytest.raises(gexc.FailedPrecondition):
        store.commit(writes)
    assert db.document("things/t2").get().get("n") == 5
    assert db.document("things/t3").get().get("n") == 0  # atomic: nothing of it landed


def test_reads_say_what_is_missing_and_an_increment_reports_its_result(
    store: Store, db: firestore.Client
) -> None:
    db.document("counters/c").set({"count": 41})
    missing = store.get(store.document("counters", "none"))
    assert (missing.exists, missing.fields, missing.update_time) == (False, {}, None)
    read = store.get_all([store.document("counters", "c"), store.document("counters", "none")] * 2)
    assert sorted(read) == ["counters/c", "counters/none"]
    assert read["counters/c"].fields == {"count": 41} and not read["counters/none"].exists
    writes = store.writes()
    writes.update(store.document("counters", "c"), {"count": Increment(1), "at": SERVER_TIMESTAMP})
    (result,) = store.commit(writes)
    assert integer_result(result) == 42
    assert store.get(store.document("counters", "c")).fields["count"] == 42


def test_only_a_commit_that_cannot_land_twice_is_retry_safe(db: firestore.Client) -> None:
    ref = db.document("things/x")
    assert is_repeatable({"a": 1, "b": {"c": SERVER_TIMESTAMP}})
    assert not is_repeatable({"a": {"b": Increment(1)}})
    cases: list[tuple[str, bool]] = []
    for name, add in [
        ("create", lambda w: w.create(ref, {"n": Increment(1)})),
        ("guarded increment", lambda w: w.update(ref, {"n": Increment(1)}, SOME_TIME)),
        ("plain update", lambda w: w.update(ref, {"n": 1})),
        ("delete", lambda w: w.delete(ref)),
        ("set", lambda w: w.set(ref, {"n": 1})),
        ("unguarded increment", lambda w: w.update(ref, {"n": Increment(1)})),
        ("set with an increment", lambda w: w.set(ref, {"n": Increment(1)})),
    ]:
        writes = Writes(db)
        add(writes)
        cases.append((name, writes.retry_safe))
    assert [safe for _, safe in cases] == [True] * 5 + [False] * 2, cases
    mixed = Writes(db)
    mixed.create(ref, {"n": 1})
    mixed.update(db.document("things/y"), {"n": Increment(1)})
    assert not mixed.retry_safe  # every write must be safe, not just one


def test_an_unavailable_commit_is_retried_only_when_it_is_retry_safe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeFirestore(grpc.StatusCode.UNAVAILABLE) as fake:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{fake.port}")
        client = firestore.Client(project="retries")
        ref = client.document("orders/o1")
        unsafe = Writes(client)
        unsafe.update(ref, {"actionsDone": Increment(1)})
        with pytest.raises(gexc.ServiceUnavailable):
            unsafe.commit(timeout_s=2.0)
        assert fake.methods() == ["Commit"]  # sent once: it may have landed
        fake.calls.clear()
        safe = Writes(client)
        safe.update(ref, {"actionsDone": Increment(1)}, last_update_time=SOME_TIME)
        with pytest.raises(gexc.RetryError):  # retried until the 2 s were spent
            safe.commit(timeout_s=2.0)
        assert fake.methods().count("Commit") > 1
        client.close()


def test_the_production_path_is_the_official_clients_tls_endpoint_with_adc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No emulator and fake Application Default Credentials: the worker's client
    opens a TLS channel to firestore.googleapis.com:443 with those credentials, and
    its calls carry the library's x-goog-api-client header."""
    key = tmp_path / "adc.json"
    key.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "fake-client",
                "client_secret": "fake-secret",
                "refresh_token": "fake-refresh-token",
            }
        )
    )
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    opened: dict[str, Any] = {}
    real_create_channel = grpc_helpers.create_channel

    def create_channel(target: str, **kwargs: Any) -> grpc.Channel:
        opened.update(target=target, credentials=kwargs.get("credentials"))
        return real_create_channel(target, **kwargs)

    with FakeFirestore(grpc.StatusCode.PERMISSION_DENIED) as fake:

        def secure_channel(target: str, channel_credentials: Any, **kwargs: Any) -> Any:
            opened.update(secure_target=target, channel_credentials=channel_credentials)
            # Hand the library a channel to the fake, so that no call leaves the machine.
            return grpc.insecure_channel(f"127.0.0.1:{fake.port}")

        monkeypatch.setattr(grpc_helpers, "create_channel", create_channel)
        monkeypatch.setattr(grpc, "secure_channel", secure_channel)
        store = build_store(firestore_client(CloudSettings(project="prod-project")), 2.0)
        with pytest.raises(gexc.PermissionDenied):
            store.get(store.document("orders", "o1"))
        store.close()
    # The library names the host alone; gRPC dials a host without a port on 443.
    assert opened["target"] == opened["secure_target"]
    assert f"{opened['target'].removesuffix(':443')}:443" == PRODUCTION_TARGET
    assert isinstance(opened["channel_credentials"], grpc.ChannelCredentials)  # TLS
    credentials = opened["credentials"]
    assert isinstance(credentials, oauth2.Credentials)
    assert credentials.refresh_token == "fake-refresh-token"
    ((method, metadata),) = fake.calls
    assert method == "/google.firestore.v1.Firestore/BatchGetDocuments"
    assert "gapic/" in metadata["x-goog-api-client"]  # the library's own header
    assert metadata["google-cloud-resource-prefix"] == "projects/prod-project/databases/(default)"
