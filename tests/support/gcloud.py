"""The real ``gcloud`` CLI with a configuration directory of its own, aimed at the emulator."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

PROJECT = "gcloud-test"


class Gcloud:
    """Runs ``gcloud`` with its own config directory, pointed at the emulator."""

    def __init__(self, binary: str, config_dir: Path, endpoint: str) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "CLOUDSDK_CONFIG": str(config_dir),
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
            # Properties set in the environment, as `gcloud config set` would in the config
            # directory, without three more runs of gcloud (about a second each).
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDTASKS": endpoint,
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_CORE_PROJECT": PROJECT,
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"gcloud {' '.join(args)} failed: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--format=json").stdout)
