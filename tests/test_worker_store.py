"""worker.store against the official Firestore emulator, cross-checked with the official client.

Documents written through the store must read back through the official client
as the same values, and the other way round; the same update, merge or set
applied by both clients to two copies of a document must leave equal documents.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.protobuf import timestamp_pb2

from worker.store import Doc, Store, build_store
from worker.values import (
    DELETE_FIELD,
    SERVER_TIMESTAMP,
    ArrayRemove,
    ArrayUnion,
    GeoPoint,
    Increment,
    Maximum,
    Reference,
)

TIMESTAMP = "<server timestamp>"  # what a SERVER_TIMESTAMP value normalises to


@pytest.fixture
def store(project: str) -> Iterator[Store]:
    started = build_store(project)
    yield started
    started.close()


def every_type() -> dict[str, Any]:
    """One document with every value type, and keys that need quoting in a field path."""
    return {
        "text": "héllo wörld ✓",
        "empty_text": "",
        "int": 42,
        "negative": -7,
        "int64_max": 2**63 - 1,
        "int64_min": -(2**63),
        "float": 3.25,
        "negative_float": -0.5,
        "true": True,
        "false": False,
        "none": None,
        "bytes": b"\x00\xffbinary",
        "when": dt.datetime(2024, 2, 29, 12, 30, 45, 123456, tzinfo=dt.UTC),
        "before_epoch": dt.datetime(1969, 7, 20, 20, 17, 40, 500000, tzinfo=dt.UTC),
        "nested": {
            "level1": {"level2": {"leaf": 1, "list": [1, "two", 3.5, None, True]}},
            "empty_map": {},
        },
        "empty_list": [],
        "empty_map": {},
        "list_of_maps": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 2}],
        "ключ": "unicode key",
        "a-b": 1,
        "with space": {"inner key": 2},
        "dotted.key": 3,
        "`tick`": 4,
        "back\\slash": 5,
        "geo": GeoPoint(48.8566, 2.3522),
    }


def test_store_writes_read_back_identically_through_the_official_client(
    store: Store, db: firestore.Client
) -> None:
    data = every_type()
    writes = store.writes()
    writes.create(
        store.document("docs", "by-store"),
        {**data, "ref": Reference(store.document("orders", "o1"))},
    )
    store.commit(writes)

    read = db.document("docs/by-store").get().to_dict()
    ref = read.pop("ref")
    assert isinstance(ref, firestore.DocumentReference) and ref.path == "orders/o1"
    assert read == data
    assert isinstance(read["when"], dt.datetime) and read["when"].tzinfo is not None


def test_official_writes_decode_identically_through_the_store(
    store: Store, db: firestore.Client
) -> None:
    data = every_type()
    db.document("docs/by-official").set({**data, "ref": db.document("orders/o1")})

    doc = store.get(store.document("docs", "by-official"))
    assert doc.exists and doc.id == "by-official"
    fields = doc.to_dict()
    assert fields.pop("ref") == Reference(store.document("orders", "o1"))
    assert fields == data
    official = db.document("docs/by-official").get().to_dict()
    official.pop("ref")
    assert fields == official
    assert type(fields["when"]) is type(official["when"])  # DatetimeWithNanoseconds, UTC
    assert fields["when"].tzinfo == dt.UTC
    assert isinstance(fields["geo"], GeoPoint)


def test_a_store_document_and_an_official_one_are_stored_alike(
    store: Store, db: firestore.Client
) -> None:
    data = every_type()
    writes = store.writes()
    writes.set(store.document("docs", "store"), data)
    store.commit(writes)
    db.document("docs/official").set(data)
    by_store = store.get_all([store.document("docs", "store"), store.document("docs", "official")])
    first, second = by_store.values()
    assert first.fields == second.fields == data


SEED: dict[str, Any] = {
    "m": {"old": 1, "keep": 2},
    "count": 1,
    "gone": True,
    "a-b": {"c": 0, "d": 1},
    "x-y": {"z": 0, "w": 1},
    "tags": ["a", "b"],
    "other": ["a", "b"],
    "untouched": "yes",
}

# (method, fields): applied by both clients to copies of SEED, the results must be equal.
SAME_CHANGES: list[tuple[str, dict[str, Any]]] = [
    (
        "update",
        {
            "actions.send.state": "done",
            "actions.send.attempts": 2,
            "actions.send.completedAt": SERVER_TIMESTAMP,
            "count": Increment(1),
        },
    ),
    ("update", {"m": {"new": 1}}),  # a map value replaces the whole map
    ("update", {"`a-b`.c": 5, "x-y.z": 6, "with space": 7, "`dot.ted`": 8, "m.`sp ace`": 9}),
    ("update", {"m.old": DELETE_FIELD, "gone": DELETE_FIELD}),
    ("update", {"m": {"at": SERVER_TIMESTAMP, "n": 1}}),
    ("update", {"count": Increment(5)}),  # only a transform: every other field stays
    ("update", {"count": Maximum(100), "tags": ArrayUnion(["c"]), "other": ArrayRemove(["a"])}),
    ("merge", {"m": {"new": 1, "old": DELETE_FIELD, "at": SERVER_TIMESTAMP}, "top": "x", "e": {}}),
    ("merge", {"m": {"at": SERVER_TIMESTAMP}}),  # only a transform below m: m's fields stay
    ("merge", {"a-b": {"c": Increment(2)}, "list": [1, {"k": "v"}], "gone": DELETE_FIELD}),
    ("set", {"m": {"z": 1, "at": SERVER_TIMESTAMP}, "count": Increment(3), "with space": 1}),
]


def normalise(value: Any) -> Any:
    """Replace timestamps (set by the server at different times) by one marker."""
    if isinstance(value, dt.datetime):
        return TIMESTAMP
    if isinstance(value, dict):
        return {key: normalise(each) for key, each in value.items()}
    if isinstance(value, list):
        return [normalise(each) for each in value]
    return value


@pytest.mark.parametrize(("method", "fields"), SAME_CHANGES)
def test_a_change_leaves_what_the_official_client_leaves(
    store: Store, db: firestore.Client, method: str, fields: dict[str, Any]
) -> None:
    db.document("same/store").set(SEED)
    db.document("same/official").set(SEED)
    writes = store.writes()
    path = store.document("same", "store")
    official = db.document("same/official")
    if method == "update":
        writes.update(path, fields)
        official.update(fields)
    elif method == "merge":
        writes.set(path, fields, merge=True)
        official.set(fields, merge=True)
    else:
        writes.set(path, fields)
        official.set(fields)
    store.commit(writes)

    expected = normalise(official.get().to_dict())
    assert normalise(db.document("same/store").get().to_dict()) == expected
    assert normalise(store.get(path).fields) == expected
    assert expected != normalise(SEED)  # the change did change something


def test_update_keys_are_quoted_in_the_mask_as_the_official_client_quotes_them(
    store: Store,
) -> None:
    keys = ["plain", "a-b.c", "`x.y`", "with space.k", "ключ", "a.`b``c`", "_u1.v2", "x-y.z"]
    writes = store.writes()
    writes.update(store.document("c", "d"), dict.fromkeys(keys, 1))
    (write,) = writes.request.writes
    expected = [FieldPath.from_string(key).to_api_repr() for key in keys]
    assert list(write.update_mask.field_paths) == expected
    assert expected[1] == "`a-b`.c" and expected[3] == "`with space`.k"
    assert dict(write.update.fields["with space"].map_value.fields)["k"].integer_value == 1


def test_transform_paths_are_quoted_and_map_keys_are_not(store: Store) -> None:
    writes = store.writes()
    writes.create(store.document("c", "d"), {"a-b": {"at": SERVER_TIMESTAMP, "x y": 1}})
    (write,) = writes.request.writes
    assert [t.field_path for t in write.update_transforms] == ["`a-b`.at"]
    assert list(write.update.fields["a-b"].map_value.fields) == ["x y"]
    assert write.current_document.exists is False and write.current_document.HasField("exists")


def test_create_of_an_existing_document_raises_already_exists_and_changes_nothing(
    store: Store,
) -> None:
    path = store.document("orders", "o1")
    writes = store.writes()
    writes.create(path, {"v": 1})
    store.commit(writes)
    before = store.get(path)

    again = store.writes()
    again.create(path, {"v": 2, "extra": True})
    with pytest.raises(gexc.AlreadyExists):
        store.commit(again)
    after = store.get(path)
    assert after.fields == {"v": 1}
    assert after.update_time == before.update_time


def test_update_with_a_stale_update_time_raises_failed_precondition(
    store: Store, db: firestore.Client
) -> None:
    path = store.document("orders", "o1")
    db.document("orders/o1").set({"v": 1})
    read = store.get(path)
    db.document("orders/o1").update({"v": 2})  # someone else writes meanwhile

    stale = store.writes()
    stale.update(path, {"v": 3}, last_update_time=read.update_time)
    with pytest.raises(gexc.FailedPrecondition):
        store.commit(stale)
    assert store.get(path).fields == {"v": 2}

    fresh = store.writes()
    fresh.update(path, {"v": 4}, last_update_time=store.get(path).update_time)
    (outcome,) = store.commit(fresh)
    assert store.get(path).fields == {"v": 4}
    assert store.get(path).update_time == outcome.update_time


def test_a_precondition_may_be_the_official_clients_update_time(
    store: Store, db: firestore.Client
) -> None:
    db.document("orders/o1").set({"v": 1})
    snapshot = db.document("orders/o1").get()  # update_time: a DatetimeWithNanoseconds
    writes = store.writes()
    writes.update(store.document("orders", "o1"), {"v": 2}, last_update_time=snapshot.update_time)
    store.commit(writes)
    stale = store.writes()
    stale.update(store.document("orders", "o1"), {"v": 3}, last_update_time=snapshot.update_time)
    with pytest.raises(gexc.FailedPrecondition):
        store.commit(stale)
    assert db.document("orders/o1").get().to_dict() == {"v": 2}


def test_update_of_a_missing_document_raises_not_found(store: Store) -> None:
    writes = store.writes()
    writes.update(store.document("orders", "missing"), {"v": 1})
    with pytest.raises(gexc.NotFound):
        store.commit(writes)
    assert not store.get(store.document("orders", "missing")).exists


def test_delete_with_a_precondition(store: Store, db: firestore.Client) -> None:
    path = store.document("orders", "o1")
    db.document("orders/o1").set({"v": 1})
    read = store.get(path)
    db.document("orders/o1").update({"v": 2})

    stale = store.writes()
    stale.delete(path, last_update_time=read.update_time)
    with pytest.raises(gexc.FailedPrecondition):
        store.commit(stale)
    assert store.get(path).exists

    current = store.writes()
    current.delete(path, last_update_time=store.get(path).update_time)
    (outcome,) = store.commit(current)
    assert isinstance(outcome.update_time, timestamp_pb2.Timestamp)
    assert not store.get(path).exists

    unconditional = store.writes()
    unconditional.delete(path)  # a missing document: no error
    store.commit(unconditional)


def test_increment_results_are_returned_in_the_order_of_the_transforms(store: Store) -> None:
    path = store.document("counters", "c")
    writes = store.writes()
    writes.create(path, {"n": Increment(1), "at": SERVER_TIMESTAMP, "f": Increment(0.5)})
    (created,) = store.commit(writes)
    assert created.transform_results[0] == 1
    assert created.transform_results[2] == 0.5

    for expected in (4, 7):
        update = store.writes()
        update.update(path, {"n": Increment(3), "label": "x"})
        (outcome,) = store.commit(update)
        assert outcome.transform_results == [expected]
    assert store.get(path).fields["n"] == 7


def test_server_timestamp_is_set_and_returned(store: Store) -> None:
    path = store.document("stamps", "s")
    writes = store.writes()
    writes.create(path, {"meta": {"createdAt": SERVER_TIMESTAMP}, "v": 1})
    (outcome,) = store.commit(writes)
    (stamp,) = outcome.transform_results
    doc = store.get(path)
    assert isinstance(stamp, dt.datetime) and stamp.tzinfo == dt.UTC
    assert doc.fields == {"meta": {"createdAt": stamp}, "v": 1}
    assert doc.update_time == outcome.update_time


def test_delete_field_removes_the_field(store: Store, db: firestore.Client) -> None:
    db.document("orders/o1").set({"keep": 1, "error": "boom", "m": {"a": 1, "b": 2}})
    writes = store.writes()
    writes.update(store.document("orders", "o1"), {"error": DELETE_FIELD, "m.a": DELETE_FIELD})
    store.commit(writes)
    assert db.document("orders/o1").get().to_dict() == {"keep": 1, "m": {"b": 2}}


def test_a_multi_write_commit_is_atomic(store: Store, db: firestore.Client) -> None:
    db.document("inventory/sku-1").set({"stock": 10})
    db.document("outbox/k1").set({"state": "pending"})
    writes = store.writes()
    writes.create(store.document("orders", "new"), {"v": 1})
    writes.update(store.document("inventory", "sku-1"), {"stock": 9})
    writes.set(store.document("other", "x"), {"v": 1})
    writes.create(store.document("outbox", "k1"), {"state": "delivered"})  # exists: refused
    assert len(writes) == 4
    with pytest.raises(gexc.AlreadyExists):
        store.commit(writes)
    docs = store.get_all(
        [
            store.document("orders", "new"),
            store.document("inventory", "sku-1"),
            store.document("other", "x"),
            store.document("outbox", "k1"),
        ]
    )
    assert [doc.exists for doc in docs.values()] == [False, True, False, True]
    assert docs[store.document("inventory", "sku-1")].fields == {"stock": 10}
    assert docs[store.document("outbox", "k1")].fields == {"state": "pending"}


def test_a_commit_returns_one_outcome_per_write(store: Store) -> None:
    writes = store.writes()
    writes.create(store.document("a", "1"), {"n": Increment(2)})
    writes.set(store.document("a", "2"), {"v": 1})
    writes.delete(store.document("a", "3"))
    outcomes = store.commit(writes)
    assert [o.transform_results for o in outcomes] == [[2], [], []]
    assert store.get(store.document("a", "2")).update_time == outcomes[1].update_time
    assert store.commit(store.writes()) == []


def test_get_of_a_missing_document(store: Store) -> None:
    path = store.document("orders", "nope")
    doc = store.get(path)
    assert doc == Doc(path, False, {}, None)
    assert doc.to_dict() == {} and doc.id == "nope"


def test_a_read_started_early_gives_what_get_gives(store: Store, db: firestore.Client) -> None:
    db.document("orders/o1").set({"status": "pending", "items": [{"sku": "a", "quantity": 2}]})
    present, missing = (
        store.get_later(store.document("orders", "o1")),
        store.get_later(store.document("orders", "nope")),
    )
    assert present() == store.get(store.document("orders", "o1"))
    assert present().fields["items"] == [{"sku": "a", "quantity": 2}]
    assert missing() == Doc(store.document("orders", "nope"), False, {}, None)


def test_get_all_includes_missing_documents(store: Store, db: firestore.Client) -> None:
    db.document("inventory/sku-1").set({"stock": 3})
    db.document("inventory/sku-3").set({"stock": 5})
    paths = [store.document("inventory", f"sku-{i}") for i in (3, 2, 1)]
    docs = store.get_all([*paths, paths[0]])  # a repeated path is read once
    assert list(docs) == paths
    assert [doc.exists for doc in docs.values()] == [True, False, True]
    assert docs[paths[0]].fields == {"stock": 5}
    assert docs[paths[1]] == Doc(paths[1], False, {}, None)
    assert store.get_all([]) == {}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"a": {"b": object()}}, "'a.b'"),
        ({"items": [1, {"x": range(3)}]}, "'items[1].x'"),
        ({"when": dt.date(2024, 1, 1)}, "'when'"),
        ({"a-b": {"c d": 1j}}, "'`a-b`.`c d`'"),
    ],
)
def test_a_value_that_cannot_be_encoded_raises_type_error_naming_the_path(
    store: Store, fields: dict[str, Any], named: str
) -> None:
    writes = store.writes()
    writes.create(store.document("c", "good"), {"v": 1})
    with pytest.raises(TypeError, match=re.escape(named)) as raised:
        writes.create(store.document("c", "bad"), fields)
    leaf: Any = fields
    while isinstance(leaf, dict | list):
        leaf = leaf[-1] if isinstance(leaf, list) else next(iter(leaf.values()))
    assert type(leaf).__name__ in str(raised.value)
    with pytest.raises(TypeError, match=re.escape(named)):
        writes.update(store.document("c", "bad"), fields)
    assert len(writes) == 1  # the refused writes were not added
    store.commit(writes)
    assert store.get(store.document("c", "good")).exists


def test_other_values_that_cannot_be_written(store: Store) -> None:
    writes = store.writes()
    path = store.document("c", "d")
    with pytest.raises(TypeError, match="'m'"):
        writes.create(path, {"m": {1: "non-str key"}})
    with pytest.raises(TypeError, match=r"'l\[0\]'"):
        writes.create(path, {"l": [SERVER_TIMESTAMP]})
    with pytest.raises(ValueError, match="'big'"):
        writes.create(path, {"big": 2**63})
    with pytest.raises(ValueError, match="DELETE_FIELD"):
        writes.create(path, {"x": DELETE_FIELD})
    with pytest.raises(ValueError, match="DELETE_FIELD"):
        writes.set(path, {"x": {"y": DELETE_FIELD}})
    with pytest.raises(ValueError, match="DELETE_FIELD"):
        writes.update(path, {"x": {"y": DELETE_FIELD}})
    with pytest.raises(ValueError, match="at least one field"):
        writes.update(path, {})
    with pytest.raises(ValueError, match="conflicting"):
        writes.update(path, {"a": 1, "a.b": 2})
    with pytest.raises(TypeError, match="Timestamp"):
        writes.delete(path, last_update_time="yesterday")
    assert len(writes) == 0


def test_document_names_and_refuses_bad_segments(store: Store, project: str) -> None:
    root = f"projects/{project}/databases/(default)/documents"
    assert store.document("orders", "o1") == f"{root}/orders/o1"
    assert store.document("orders", "o1", "ledger", "a") == f"{root}/orders/o1/ledger/a"
    for bad in [(), ("orders",), ("orders", "o1", "ledger"), ("orders", "a/b"), ("orders", "")]:
        with pytest.raises(ValueError):
            store.document(*bad)


def test_the_rpc_arguments_go_with_every_call(project: str) -> None:
    hurried = build_store(project, rpc={"timeout": 1e-6, "retry": None})
    try:
        with pytest.raises(gexc.DeadlineExceeded):
            hurried.get(hurried.document("orders", "o1"))
        writes = hurried.writes()
        writes.set(hurried.document("orders", "o1"), {"v": 1})
        with pytest.raises(gexc.DeadlineExceeded):
            hurried.commit(writes)
    finally:
        hurried.close()


def test_the_emulator_is_called_as_its_admin_with_the_resource_prefix(
    store: Store, project: str
) -> None:
    assert store.metadata == (
        ("google-cloud-resource-prefix", f"projects/{project}/databases/(default)"),
        ("authorization", "Bearer owner"),
    )


def test_without_the_emulator_the_store_uses_default_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.auth.credentials import AnonymousCredentials

    asked: list[Any] = []

    def default(*args: Any, **kwargs: Any) -> tuple[Any, str]:
        asked.append(kwargs)
        return AnonymousCredentials(), "adc-project"

    channels: list[tuple[Any, str]] = []

    def secure_channel(credentials: Any, request: Any, target: str, **kwargs: Any) -> Any:
        channels.append((credentials, target))
        return grpc.insecure_channel("127.0.0.1:1")  # never called

    monkeypatch.setattr("google.auth.default", default)
    monkeypatch.setattr("google.auth.transport.grpc.secure_authorized_channel", secure_channel)
    cloud = build_store("prod", "orders-db", environ={})
    try:
        assert asked, "Application Default Credentials were not asked for"
        assert "https://www.googleapis.com/auth/datastore" in asked[0]["scopes"]
        ((credentials, target),) = channels
        assert isinstance(credentials, AnonymousCredentials)
        assert target == "firestore.googleapis.com:443"
        assert cloud.metadata == (
            ("google-cloud-resource-prefix", "projects/prod/databases/orders-db"),
        )
        assert cloud.document("a", "b") == "projects/prod/databases/orders-db/documents/a/b"
    finally:
        cloud.close()
