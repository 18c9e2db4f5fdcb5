"""Unit tests of the worker's striped in-process locks (pure logic, no servers)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable

import pytest

from worker.errors import TransientTaskError
from worker.sku_locks import StripedLocks

PROBE_WAIT_S = 0.01  # how long a probe waits for a lock another stack holds, seconds


def can_hold(locks: StripedLocks, keys: Iterable[str]) -> bool:
    """Tell whether ``keys`` can be taken now (and give them back at once)."""
    with contextlib.ExitStack() as probe:
        try:
            locks.hold(probe, keys, timeout_s=PROBE_WAIT_S)
        except TransientTaskError:
            return False
    return True


def test_a_held_key_makes_a_second_holder_wait_then_give_up_with_a_transient_error() -> None:
    locks = StripedLocks()
    with contextlib.ExitStack() as first:
        locks.hold(first, ["inventory/sku-1", "inventory/sku-2"], timeout_s=1.0)
        with contextlib.ExitStack() as second, pytest.raises(TransientTaskError, match=r"0\.01 s"):
            locks.hold(second, ["inventory/sku-2"], timeout_s=0.01)
        assert not can_hold(locks, ["inventory/sku-1"])
    assert can_hold(locks, ["inventory/sku-2", "inventory/sku-1"])  # released with the stack


def test_keys_on_one_stripe_are_taken_once() -> None:
    locks = StripedLocks(stripes=1)
    with contextlib.ExitStack() as held:
        locks.hold(held, ["a", "b", "c"], timeout_s=1.0)  # one lock: no self-deadlock
        assert not can_hold(locks, ["z"])  # the one stripe is taken
    assert can_hold(locks, ["a"])  # and given back once, not left held


def test_a_failed_hold_releases_what_it_took() -> None:
    locks = StripedLocks(stripes=2)
    # hash() is salted per process, so search for a key on each stripe (never runs out)
    first, second = (
        next(k for k in (f"sku-{n}" for n in itertools.count()) if hash(k) % 2 == stripe)
        for stripe in (0, 1)
    )
    with contextlib.ExitStack() as blocker:
        locks.hold(blocker, [second], timeout_s=1.0)
        partial = contextlib.ExitStack()
        with pytest.raises(TransientTaskError):
            locks.hold(partial, [second, first], timeout_s=0.01)  # takes stripe 0, not 1
        assert not can_hold(locks, [first])  # taken, and handed to the caller's stack
        partial.close()  # the caller's stack releases what the failed hold took
        assert can_hold(locks, [first])
        assert not can_hold(locks, [second])  # the blocker's stays held
