"""deploy.sh run in --dry-run with a gcloud that records any call (it must get none)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A gcloud that records any call: the dry run must make none.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "gcloud"
    fake.write_text(f"#!/bin/sh\necho called >> {tmp_path / 'gcloud-called'}\nexit 99\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "deploy.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
