"""The services keep their start-up objects out of the cycle collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orders.gc_tuning import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restored")
def test_settling_freezes_the_heap_and_collects_young_objects_less_often() -> None:
    gc.unfreeze()
    older = gc.get_threshold()[1:]
    settle_heap()
    assert gc.get_freeze_count() > 1000  # the imported libraries' objects
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *older)
