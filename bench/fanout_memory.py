"""Peak memory of a fan-out run over 10,000 and over 100,000 pending orders.

Each run is ``fanout backfill`` in a fresh process (the command operators use);
its peak resident set size is read from the kernel when it exits (``wait4``).
A run that holds a bounded number of pages, whatever the backlog, peaks at about
the same size for both; the target is the larger within 1.3x of the smaller.

Usage: .venv/bin/python bench/fanout_memory.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.cloud import firestore

from bench.common import quiet_queue, report, seed, tasks_emulator
from localcloud.firestore_emulator import emulator_host


def peak_rss_mib(project: str, tasks_address: str) -> tuple[float, dict[str, object]]:
    """Run ``fanout backfill`` over ``project``; return its peak RSS (MiB) and summary."""
    env = {
        **os.environ,
        "GOOGLE_CLOUD_PROJECT": project,
        "CLOUD_TASKS_EMULATOR_HOST": tasks_address,
        "WORKER_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
        "FANOUT_RAMP_START_PER_SECOND": "0",  # memory, not the 500/50/5 pacing, is measured
    }
    command = [str(Path(sys.executable).parent / "fanout"), "backfill", "--json"]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    summary = json.loads(output.decode().strip().splitlines()[-1])
    return round(usage.ru_maxrss / 1024, 1), summary  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    args = parser.parse_args()
    figures: dict[str, object] = {}
    peaks = []
    with emulator_host(), tasks_emulator() as address:
        for size in args.sizes:
            project = f"bench-memory-{uuid.uuid4().hex[:6]}"
            print(f"seeding {size} orders ...", file=sys.stderr)
            seed(firestore.Client(project=project), size)
            quiet_queue(project, address)
            print(f"running fanout backfill over {size} orders ...", file=sys.stderr)
            peak, summary = peak_rss_mib(project, address)
            peaks.append(peak)
            figures[f"orders_{size}_peak_rss_mib"] = peak
            figures[f"orders_{size}_queued"] = summary["queued"]
            figures[f"orders_{size}_seconds"] = summary["seconds"]
    figures["ratio_larger_to_smaller"] = round(peaks[1] / peaks[0], 3)
    report(figures)


if __name__ == "__main__":
    main()
