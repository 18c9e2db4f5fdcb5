"""The task contract's fast paths give exactly what the plain rules give."""

from __future__ import annotations

import json

from orders.contract import TaskPayload, encode_order_id

IDS = ["o-1", "Order123", "ABCxyz09", "ü", "a b", "_x", "😀", "x" * 600, "é1", ""]


def test_an_order_id_of_ascii_letters_and_digits_is_kept_and_others_are_escaped() -> None:
    plain = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    for order_id in IDS:
        by_rule = "".join(chr(b) if b in plain else f"_{b:02x}" for b in order_id.encode("utf-8"))
        assert encode_order_id(order_id) == by_rule, order_id


def test_the_task_body_is_byte_for_byte_what_json_dumps_writes() -> None:
    for order_id in [*IDS, 'q"uote\\back\nline\x00']:
        payload = TaskPayload(order_id, "send_confirmation", 7, "run-ü")
        expected = json.dumps(
            {"orderId": order_id, "action": "send_confirmation", "generation": 7, "runId": "run-ü"},
            separators=(",", ":"),
        ).encode()
        assert payload.to_json() == expected
        if order_id:  # an empty one is refused on the way in
            assert TaskPayload.from_json(payload.to_json()) == payload
