"""The garbage collector's settings for a long-running service process.

A request makes thousands of short-lived objects (protobuf messages, dicts), so
the default first-generation threshold (700 allocations) runs the cycle
collector hundreds of times a second, and every full collection walks the
hundreds of thousands of objects the imported libraries and clients made at
start-up. :func:`settle_heap` moves those start-up objects out of the
collector's reach (:func:`gc.freeze`) and collects the young generation less
often. Reference counting still frees nearly everything at once; only cycles
wait a little longer.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations (net of frees) between young-generation collections


def settle_heap() -> None:
    """Freeze what start-up made and collect young objects less often; call once it is built."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
