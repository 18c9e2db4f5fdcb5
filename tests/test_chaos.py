"""The chaos suite's small version: a worker crash and lost answers, on the real local cloud.

``make chaos`` runs every scenario at 2,000 orders; here two of them run over a
few hundred orders, asserting the same invariants.
"""

from __future__ import annotations

import pytest

from localcloud.chaos.scenarios import SCENARIOS, run_scenario

ORDERS = 300
TIMEOUT_S = 240.0


@pytest.mark.parametrize("name", ["worker-crash", "dropped-answers"])
def test_nothing_is_lost_or_done_twice(firestore_emulator: str, name: str) -> None:
    outcome = run_scenario(SCENARIOS[name], ORDERS, TIMEOUT_S)
    assert outcome.completed == ORDERS, outcome
    assert outcome.checks and all(outcome.checks.values()), outcome.checks
