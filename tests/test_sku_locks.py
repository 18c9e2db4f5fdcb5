"""Unit tests of the worker's striped in-process locks (pure logic, no servers)."""

from __future__ import annotations

import contextlib

import pytest

from worker.errors import TransientTaskError
from worker.sku_locks import StripedLocks


def test_a_held_key_makes_a_second_holder_wait_then_give_up_with_a_transient_error() -> None:
    locks = StripedLocks()
    with contextlib.ExitStack() as first:
        locks.hold(first, ["inventory/sku-1", "inventory/sku-2"], timeout_s=1.0)
        with contextlib.ExitStack() as second, pytest.raises(TransientTaskError):
            locks.hold(second, ["inventory/sku-2"], timeout_s=0.01)
    with contextlib.ExitStack() as third:  # released with the first stack
        locks.hold(third, ["inventory/sku-2", "inventory/sku-1"], timeout_s=1.0)


def test_keys_on_one_stripe_are_taken_once() -> None:
    locks = StripedLocks(stripes=1)
    with contextlib.ExitStack() as held:
        locks.hold(held, ["a", "b", "c"], timeout_s=1.0)  # one lock: no self-deadlock
    with contextlib.ExitStack() as again:
        locks.hold(again, ["a"], timeout_s=1.0)


def test_a_failed_hold_releases_what_it_took() -> None:
    locks = StripedLocks(stripes=2)
    with contextlib.ExitStack() as blocker:
        locks.hold(blocker, ["x"], timeout_s=1.0)
        blocked = hash("x") % 2
        other = next(key for key in ("a", "b", "c", "d", "e") if hash(key) % 2 != blocked)
        with pytest.raises(TransientTaskError), contextlib.ExitStack() as partial:
            locks.hold(partial, [other, "x"], timeout_s=0.01)
    with contextlib.ExitStack() as after:
        locks.hold(after, [other], timeout_s=1.0)
