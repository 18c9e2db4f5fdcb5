"""Who may call the fanout: tokens from the local issuer, verified like Google's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from google.cloud import firestore

from fanout.config import FanoutConfig
from localcloud.tasks.server import TasksEmulator
from orders.schema import FANOUT_RUNS
from tests.support.fanout_setup import SCHEDULER, make_cloud, served_fanout
from tests.support.servers import ServerThread


@pytest.fixture
def fanout(project: str, tasks_emulator: TasksEmulator) -> Iterator[ServerThread]:
    cloud = make_cloud(project, tasks_emulator, "http://127.0.0.1:9")
    with served_fanout(FanoutConfig(cloud=cloud, log_level="WARNING"), tasks_emulator) as server:
        yield server


@pytest.mark.parametrize("path", ["/fanout", "/fanout/continue"])
@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("not a JWT", 401),
        ("wrong audience", 401),
        ("other issuer", 401),
        ("wrong account", 403),
    ],
)
def test_callers_without_a_valid_token_of_an_allowed_account_are_refused(
    db: firestore.Client,
    fanout: ServerThread,
    tasks_emulator: TasksEmulator,
    path: str,
    case: str,
    status: int,
) -> None:
    issuer = tasks_emulator.issuer
    tokens = {
        "no token": None,
        "not a JWT": "abc.def",
        "wrong audience": issuer.mint("https://elsewhere.example", SCHEDULER),
        "other issuer": _foreign_token(fanout.url),
        "wrong account": issuer.mint(fanout.url, "intruder@test.iam.gserviceaccount.com"),
    }
    token = tokens[case]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = requests.post(fanout.url + path, json={}, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["message"]
    assert list(db.collection(FANOUT_RUNS).stream()) == []  # nothing ran


def _foreign_token(audience: str) -> str:
    from localcloud.oidc import LocalIssuer

    with LocalIssuer() as other:  # same shape of token, another key and issuer
        return other.mint(audience, SCHEDULER)


def test_a_valid_scheduler_token_runs_and_get_is_not_allowed(
    fanout: ServerThread, tasks_emulator: TasksEmulator
) -> None:
    token = tasks_emulator.issuer.mint(fanout.url, SCHEDULER)
    answer = requests.post(
        f"{fanout.url}/fanout", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["state"] == "finished"
    wrong_method = requests.get(f"{fanout.url}/fanout", timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]
