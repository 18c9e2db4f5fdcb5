"""`localcloud up` serves the console and prints where; Ctrl-C stops it with the rest."""

from __future__ import annotations

import datetime as dt
import re
import signal
from pathlib import Path

import pytest
import requests

from tests.support.localcloud_up import localcloud_up
from tests.support.receiver import wait_for

CONSOLE_LINE = re.compile(r"^console  (http://127\.0\.0\.1:\d+/)$", re.MULTILINE)


@pytest.mark.usefixtures("firestore_emulator")  # skips outside CI, fails in CI, when it is missing
def test_localcloud_up_serves_the_console_until_interrupted(tmp_path: Path) -> None:
    # No run while the test looks: the 5 orders stay pending (the schedule's one day a
    # year was the day before yesterday).
    passed = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    never_now = f"0 0 {passed.day} {passed.month} *"
    with localcloud_up(tmp_path, "--orders", "5", "--schedule", never_now) as (process, log):
        wait_for(lambda: CONSOLE_LINE.search(log.read_text()) is not None, timeout_s=120)
        url = CONSOLE_LINE.search(log.read_text()).group(1)  # type: ignore[union-attr]
        assert requests.get(f"{url}healthz", timeout=10).json()["service"] == "console"
        wait_for(lambda: "Press Ctrl-C" in log.read_text(), timeout_s=60)
        page = requests.get(url, timeout=30)
        assert page.status_code == 200 and 'data-queue="order-actions"' in page.text
        assert re.search(r'data-status="pending"><a[^>]*>5<', page.text)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}healthz", timeout=5)
