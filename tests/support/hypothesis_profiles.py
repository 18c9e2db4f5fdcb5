"""Hypothesis profiles: a few examples per property in ``make test``, many on demand.

``HYPOTHESIS_PROFILE=deep`` runs each property with many more examples (minutes,
not seconds); the default profile keeps the suite's time in CI. No deadline:
every example makes real HTTP and gRPC calls on a loaded machine.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

DEFAULT_EXAMPLES = 30
DEEP_EXAMPLES = 600
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}


def load_profile() -> str:
    """Register the ``default`` and ``deep`` profiles and load ``HYPOTHESIS_PROFILE``'s."""
    settings.register_profile("default", max_examples=DEFAULT_EXAMPLES, **_COMMON)
    settings.register_profile("deep", max_examples=DEEP_EXAMPLES, **_COMMON)
    name = os.environ.get("HYPOTHESIS_PROFILE", "default")
    settings.load_profile(name)
    return name
