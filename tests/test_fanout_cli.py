"""The ``fanout`` command against the Firestore emulator and the Cloud Tasks emulator:
filters, dry runs, redrives, resuming a run, exit codes, and triggering a served fanout.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from google.cloud import firestore

from fanout.cli import main
from fanout.config import FanoutConfig
from fanout.lease import RunLease
from fanout.selection import QUEUED_AT
from localcloud.tasks.server import TasksEmulator
from orders.schema import FANOUT_RUNS, ORDERS
from orders.settings import CloudSettings
from tests.support.fanout_setup import SCHEDULER, make_cloud, served_fanout
from tests.support.seeding import seed_orders

BASE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # seed_orders' first createdAt


@pytest.fixture
def cloud(project: str, tasks_emulator: TasksEmulator) -> CloudSettings:
    return make_cloud(project, tasks_emulator, "http://127.0.0.1:9")


def fanout(cloud: CloudSettings, *args: str, **env: str) -> Result:
    environ = {
        "GOOGLE_CLOUD_PROJECT": cloud.project,
        "CLOUD_TASKS_EMULATOR_HOST": cloud.tasks_emulator_host,
        "WORKER_URL": cloud.worker_url,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    return CliRunner().invoke(main, list(args), env=environ, catch_exceptions=False)


def summary_of(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def orders(db: firestore.Client) -> dict[str, dict[str, Any]]:
    return {doc.id: doc.to_dict() or {} for doc in db.collection(ORDERS).stream()}


def test_a_dry_run_counts_and_writes_nothing(
    db: firestore.Client, cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 25)
    before = orders(db)
    result = fanout(cloud, "backfill", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert (summary["orders"], summary["tasks_created"], summary["state"]) == (25, 75, "dry-run")
    assert orders(db) == before
    assert list(db.collection(FANOUT_RUNS).stream()) == []
    assert list(db.collection("fanout_leases").stream()) == []
    assert tasks_emulator.stats()["tasks_created"] == 0


def test_filters_choose_a_created_range_and_a_subset_of_actions(
    db: firestore.Client, cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    ids = seed_orders(db, 30)  # created one second apart from BASE
    since = (BASE + dt.timedelta(seconds=10)).isoformat()
    until = (BASE + dt.timedelta(seconds=20)).isoformat()
    result = fanout(
        cloud, "backfill", "--since", since, "--until", until, "--action", "send_confirmation",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert (summary["orders"], summary["tasks_created"], summary["queued"]) == (10, 10, 0)
    after = orders(db)
    # Two actions were not enqueued: the orders stay pending (the next run enqueues
    # them, and finds send_confirmation's task already there) but record this run.
    assert {o["status"] for o in after.values()} == {"pending"}
    chosen = {i for i, o in after.items() if (o.get("fanout") or {}).get("runId")}
    assert chosen == set(ids[10:20])
    assert tasks_emulator.stats()["tasks_created"] == 10
    rest = summary_of(fanout(cloud, "backfill", "--json"))
    assert (rest["orders"], rest["tasks_created"], rest["deduplicated"]) == (30, 80, 10)
    assert {o["status"] for o in orders(db).values()} == {"queued"}


def test_a_redrive_re_enqueues_stuck_orders_with_the_next_generation(
    db: firestore.Client, cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    ids = seed_orders(db, 12)
    first = fanout(cloud, "backfill", "--json")
    assert summary_of(first)["tasks_created"] == 36
    col = db.collection(ORDERS)
    col.document(ids[0]).update({"status": "completed"})  # finished: not stuck
    col.document(ids[1]).update({"actions.send_confirmation.state": "done"})  # partly done
    nothing_yet = fanout(cloud, "backfill", "--redrive-after", "1h", "--json")
    assert summary_of(nothing_yet)["orders"] == 0  # queued only moments ago
    two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    batch = db.batch()  # two hours pass: the orders were queued that long ago
    for order_id in ids:
        batch.update(col.document(order_id), {QUEUED_AT: two_hours_ago})
    batch.commit()
    result = fanout(cloud, "backfill", "--redrive-after", "1h", "--json")
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert summary["orders"] == 11
    assert summary["tasks_created"] == 11 * 3 - 1 and summary["deduplicated"] == 0
    after = orders(db)
    assert after[ids[0]]["fanout"]["generation"] == 0  # completed: left alone
    assert {after[i]["fanout"].get("generation") for i in ids[1:]} == {1}
    assert {after[i]["fanout"]["runId"] for i in ids[1:]} == {summary["run_id"]}
    assert tasks_emulator.stats()["tasks_created"] == 36 + 32


def test_a_run_stopped_by_its_budget_is_resumed_from_its_checkpoint(
    db: firestore.Client, cloud: CloudSettings
) -> None:
    seed_orders(db, 40)
    stopped = fanout(cloud, "backfill", "--page-size", "10", "--time-budget", "0.001s", "--json")
    first = summary_of(stopped)
    assert first["state"] == "stopped" and first["orders"] == 10, stopped.output
    assert stopped.exit_code == 4  # orders left: resume it
    assert "FANOUT_URL" in first["message"]
    record = db.collection(FANOUT_RUNS).document(first["run_id"]).get().to_dict() or {}
    assert record["checkpoint"]["orderId"] == "order-00009"
    resumed = fanout(cloud, "backfill", "--resume", first["run_id"], "--page-size", "10", "--json")
    assert resumed.exit_code == 0, resumed.output
    second = summary_of(resumed)
    assert (second["state"], second["orders"], second["segment"]) == ("finished", 30, 1)
    record = db.collection(FANOUT_RUNS).document(first["run_id"]).get().to_dict() or {}
    assert record["totals"]["orders"] == 40 and record["totals"]["tasks_created"] == 120
    assert {o["status"] for o in orders(db).values()} == {"queued"}
    again = fanout(cloud, "backfill", "--resume", first["run_id"], "--json")
    assert summary_of(again)["orders"] == 0  # a finished run stays finished


def test_status_shows_a_run_and_the_latest_runs(db: firestore.Client, cloud: CloudSettings) -> None:
    seed_orders(db, 20)
    stopped = summary_of(
        fanout(cloud, "backfill", "--page-size", "10", "--time-budget", "0.001s", "--json")
    )
    finished = summary_of(fanout(cloud, "backfill", "--resume", stopped["run_id"], "--json"))
    assert finished["state"] == "finished"
    shown = fanout(cloud, "status", stopped["run_id"])
    assert shown.exit_code == 0, shown.output
    assert f"run {stopped['run_id']}" in shown.stdout
    assert "state       finished (segment 1)" in shown.stdout
    assert "orders 20  queued 20  tasks_created 60" in shown.stdout
    assert "checkpoint  after order order-00019" in shown.stdout
    latest = fanout(cloud, "status")
    assert stopped["run_id"] in latest.stdout and "backfill" in latest.stdout
    assert fanout(cloud, "status", "nope").exit_code == 3


def test_re_fanning_out_failed_orders_uses_new_task_names(
    db: firestore.Client, cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    ids = seed_orders(db, 4)
    assert summary_of(fanout(cloud, "backfill", "--json"))["tasks_created"] == 12
    db.collection(ORDERS).document(ids[0]).update({"status": "failed"})
    again = summary_of(fanout(cloud, "backfill", "--status", "failed", "--json"))
    assert (again["orders"], again["tasks_created"], again["deduplicated"]) == (1, 3, 0)
    order = orders(db)[ids[0]]
    assert order["status"] == "queued" and order["fanout"]["generation"] == 1


def test_a_failed_order_makes_the_exit_status_non_zero_and_is_listed(
    db: firestore.Client, cloud: CloudSettings
) -> None:
    seed_orders(db, 5)
    db.collection(ORDERS).document("order-00002").update({"fanout": {"generation": -1}})
    result = fanout(cloud, "backfill")
    assert result.exit_code == 1
    assert "failed: order-00002: cannot form its tasks" in result.stdout
    assert "orders 5  queued 4" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "is not an ISO 8601 date"),
        (["--redrive-after", "5x"], "is not a duration"),
        (["--status", "shipped"], "'shipped' is not one of"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "is not before until"),
        (["--resume", "r1", "--dry-run"], "--resume continues a run"),
        (["--resume", "r1", "--action", "update_inventory"], "--resume continues a run"),
    ],
)
def test_bad_arguments_get_a_clear_message_and_exit_2(
    cloud: CloudSettings, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["backfill", *args], env={"WORKER_URL": "http://x"})
    assert result.exit_code == 2
    assert message in result.output


def test_resuming_an_unknown_run_or_running_beside_another_exits_3(
    db: firestore.Client, cloud: CloudSettings
) -> None:
    result = fanout(cloud, "backfill", "--resume", "no-such-run")
    assert result.exit_code == 3 and "no run 'no-such-run'" in result.output
    RunLease(db, "someone-else", duration_s=60).acquire(0)
    blocked = fanout(cloud, "backfill")
    assert blocked.exit_code == 3 and "someone-else" in blocked.output


def test_fanout_run_triggers_a_served_fanout_with_an_id_token(
    db: firestore.Client, cloud: CloudSettings, tasks_emulator: TasksEmulator
) -> None:
    seed_orders(db, 8)
    with served_fanout(FanoutConfig(cloud=cloud, log_level="WARNING"), tasks_emulator) as server:
        token = tasks_emulator.issuer.mint(audience=server.url, email=SCHEDULER)
        result = fanout(cloud, "run", "--url", server.url, "--token", token)
        refused = fanout(cloud, "run", "--url", server.url, "--token", "not-a-token")
    assert result.exit_code == 0, result.output
    assert "orders 8  queued 8  tasks created 24" in result.stdout
    assert refused.exit_code == 1 and "answered 401" in refused.output
