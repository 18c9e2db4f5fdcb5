"""deploy.sh and the queue group: every queue of the group from the one flags file, the
group's size given to both services, and the Firestore single-field index exemptions.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.deploy_plan import ROOT, plan

G = "gcloud --project=acme --quiet"


def test_the_plan_creates_and_updates_every_queue_of_the_group_from_one_flags_file(
    tmp_path: Path,
) -> None:
    result = plan(tmp_path, "--dry-run", "--project", "acme", "--queues", "3")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "gcloud-called").exists()
    out = result.stdout
    flags = f"--flags-file={ROOT / 'deploy' / 'queue.yaml'}"
    for name in ("order-actions-00", "order-actions-01", "order-actions-02"):
        assert f"{G} tasks queues create {name} --location=us-central1 {flags}" in out
        assert f"{G} tasks queues update {name} --location=us-central1 {flags}" in out
    assert "queues create order-actions-03 " not in out
    assert "queues create order-actions " not in out  # a group has no unnumbered queue
    deploys = [line for line in out.splitlines() if " run deploy " in line]
    assert len(deploys) == 3 and all("TASKS_QUEUE_COUNT=3" in line for line in deploys)  # + console


def test_without_queues_the_plan_keeps_the_single_queue(tmp_path: Path) -> None:
    result = plan(tmp_path, "--dry-run", "--project", "acme")
    assert result.returncode == 0, result.stderr
    assert "queues create order-actions --location" in result.stdout
    assert "order-actions-00" not in result.stdout


def test_a_bad_group_size_is_refused_with_a_reason(tmp_path: Path) -> None:
    for bad in ("0", "101", "four"):
        result = plan(tmp_path, "--dry-run", "--project", "acme", "--queues", bad)
        assert result.returncode == 2
        assert f"--queues (TASKS_QUEUE_COUNT) is '{bad}'" in result.stderr


def test_the_plan_exempts_the_growing_fields_no_query_uses_from_single_field_indexes(
    tmp_path: Path,
) -> None:
    overrides = json.loads((ROOT / "deploy" / "firestore.indexes.json").read_text())[
        "fieldOverrides"
    ]
    exempt = {(o["collectionGroup"], o["fieldPath"]) for o in overrides if o["indexes"] == []}
    # Fields a query filters or orders on alone stay indexed.
    assert ("orders", "status") not in exempt
    assert ("fanout_runs", "startedAt") not in exempt  # `fanout status` lists the latest runs
    assert {("orders", "createdAt"), ("orders", "actions"), ("ledger", "claimedAt")} <= exempt
    out = plan(tmp_path, "--dry-run", "--project", "acme").stdout
    for group, field in exempt:
        line = f"{G} firestore indexes fields update {field} --collection-group={group}"
        assert f"{line} --disable-indexes --async" in out
