"""The chaos suite's small version: a worker crash and lost answers, on the real local cloud.

``make chaos`` runs every scenario at 2,000 orders; here two of them run over a
few hundred orders, asserting the same invariants.
"""

from __future__ import annotations

import pytest

from localcloud.chaos.scenarios import SCENARIOS, run_scenario

# A few hundred orders: at the fault (a quarter of the
# orders done) 225 orders, 675 deliveries, are left, several times the queue's 100
# concurrent dispatches and the worker's 32 threads, so deliveries are in flight when
# the worker is killed or answers are dropped, as with 2,000.
ORDERS = 300
TIMEOUT_S = 240.0


@pytest.mark.parametrize("name", ["worker-crash", "dropped-answers"])
def test_nothing_is_lost_or_done_twice(firestore_emulator: str, name: str) -> None:
    outcome = run_scenario(SCENARIOS[name], ORDERS, TIMEOUT_S)
    assert outcome.completed == ORDERS, outcome
    assert outcome.checks and all(outcome.checks.values()), outcome.checks
