"""The outbox's Idempotency-Key: ASCII, stable, one per (order, action), a valid document id."""

from __future__ import annotations

import hashlib
import urllib.parse

from hypothesis import given
from hypothesis import strategies as st

from orders.contract import ACTION_PATTERN
from tests.support.hostile import LONG_ID
from worker.outbox import MAX_KEY_CHARS, outbox_key

# Order ids as Firestore documents hold them: any text that UTF-8 can carry.
order_ids = st.text(st.characters(exclude_categories=["Cs"]), max_size=600)
actions = st.from_regex(ACTION_PATTERN, fullmatch=True)


def is_document_id(key: str) -> bool:
    reserved = key in (".", "..") or (key.startswith("__") and key.endswith("__"))
    return "/" not in key and not reserved and len(key.encode()) <= 1500


def test_plain_ids_keep_their_key_and_others_are_percent_encoded() -> None:
    assert outbox_key("order-00001", "notify_warehouse") == "order-00001:notify_warehouse"
    assert outbox_key("weird id é中", "a") == "weird%20id%20%C3%A9%E4%B8%AD:a"
    assert outbox_key("a:b/c", "x") == "a%3Ab%2Fc:x"


def test_a_key_too_long_for_a_document_id_is_a_digest() -> None:
    digest = hashlib.sha256(LONG_ID.encode()).hexdigest()
    assert outbox_key(LONG_ID, "notify_warehouse") == f"sha256={digest}:notify_warehouse"
    near = "x" * (MAX_KEY_CHARS - len(":a"))
    assert outbox_key(near, "a") == f"{near}:a"  # exactly at the limit: still readable
    assert outbox_key(near + "x", "a").startswith("sha256=")


@given(order_ids, actions)
def test_a_key_is_ascii_stable_and_a_document_id(order_id: str, action: str) -> None:
    key = outbox_key(order_id, action)
    assert key.isascii() and key == outbox_key(order_id, action)
    assert is_document_id(key) and len(key) <= MAX_KEY_CHARS
    encoded, _, tail = key.rpartition(":")
    assert tail == action
    if not encoded.startswith("sha256="):  # a receiver can read the order id back
        assert urllib.parse.unquote(encoded, errors="strict") == order_id


@given(order_ids, actions, order_ids, actions)
def test_different_orders_or_actions_never_share_a_key(
    first: str, first_action: str, second: str, second_action: str
) -> None:
    if (first, first_action) != (second, second_action):
        assert outbox_key(first, first_action) != outbox_key(second, second_action)


@given(st.text(max_size=3), actions)
def test_short_ids_differing_by_one_character_get_different_keys(
    order_id: str, action: str
) -> None:
    keys = {outbox_key(order_id + c, action) for c in ":%=/ é"}
    assert len(keys) == 6
