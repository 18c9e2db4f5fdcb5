"""The console in deploy.sh's plan: private, its own account, only the roles it uses."""

from __future__ import annotations

from pathlib import Path

from tests.support.deploy_plan import plan

SA = "acme-prod.iam.gserviceaccount.com"


def test_the_console_deploys_private_with_its_own_account_and_narrow_roles(tmp_path: Path) -> None:
    result = plan(tmp_path, "--dry-run", "--project", "acme-prod", "--region", "europe-west1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("iam service-accounts create console " in line for line in lines)
    [deploy] = [line for line in lines if " run deploy order-console " in line]
    assert "--no-allow-unauthenticated" in deploy
    assert f"--service-account=console@{SA}" in deploy
    assert "SERVICE=console" in deploy
    assert "FANOUT_URL=https://order-fanout-${PROJECT_NUMBER}.europe-west1.run.app" in deploy
    assert f"CONSOLE_TRIGGER_AS=scheduler-invoker@{SA}" in deploy
    granted = {
        line.split("--role=")[1].split()[0]
        for line in lines
        if f"serviceAccount:console@{SA}" in line and "--role=" in line
    }
    assert granted == {
        "roles/datastore.viewer",
        "roles/cloudtasks.queueAdmin",
        "roles/cloudtasks.viewer",
        "roles/cloudtasks.taskRunner",
        "roles/cloudtasks.taskDeleter",
        "roles/iam.serviceAccountOpenIdTokenCreator",
        "roles/monitoring.viewer",  # the queues' attempt counts: dispatches and retries /s
    }
    assert not any("allow-unauthenticated" in line and "no-" not in line for line in lines)
    assert "gcloud run services proxy order-console --region=europe-west1" in result.stdout
