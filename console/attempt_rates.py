"""Dispatches and retries per second per queue, from Cloud Monitoring's attempt counts.

Cloud Tasks' queue statistics count no retries, so the console reads the
Cloud Tasks metric ``cloudtasks.googleapis.com/queue/task_attempt_count``
(DELTA, INT64, monitored resource ``cloud_tasks_queue``, metric label
``response_code``) through the official ``google-cloud-monitoring`` client:
one ``ListTimeSeries`` call for the location, aligned to minutes with
``ALIGN_RATE`` (attempts per second). Of the newest minute Monitoring has:

- *dispatches /s* is every attempt of the queue, per second;
- *retries /s* is the attempts whose ``response_code`` is not a success (``ok``,
  or a 2xx status), per second: each such attempt is retried by the queue,
  unless the task has used up its retry configuration (max attempts or max
  retry duration).

Cloud Monitoring publishes a minute's count a few minutes late, so the figures
describe the newest minute it has, whose end is shown. The call has a short
timeout and no retries; when it fails (unreachable, too slow, or the account
lacks ``roles/monitoring.viewer``) the reading says why instead, and the page
shows ``—`` with that reason.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3
from google.protobuf import duration_pb2, timestamp_pb2

log = logging.getLogger(__name__)

ATTEMPT_METRIC = "cloudtasks.googleapis.com/queue/task_attempt_count"
QUEUE_RESOURCE = "cloud_tasks_queue"
PERIOD_S = 60  # the rates are per second over one minute
LOOKBACK_S = 600  # how far back the newest minute is looked for, seconds


@dataclass(frozen=True)
class QueueAttemptRate:
    """A queue's attempts in one minute, per second: all of them, and the failed ones."""

    dispatches_per_s: float
    retries_per_s: float


@dataclass(frozen=True)
class AttemptRates:
    """One reading of Cloud Monitoring: rates by queue id, or why there are none.

    ``minute_end`` is the end of the minute the rates cover (None when no queue
    had attempts in the last :data:`LOOKBACK_S` seconds); ``unavailable`` is
    empty when Monitoring answered, else the reason it could not be read.
    """

    by_queue: Mapping[str, QueueAttemptRate] = field(default_factory=dict)
    minute_end: dt.datetime | None = None
    unavailable: str = ""

    def of(self, queue_id: str) -> QueueAttemptRate | None:
        """Return a queue's rates (zero without attempts); None when Monitoring was not read."""
        if self.unavailable:
            return None
        return self.by_queue.get(queue_id, QueueAttemptRate(0.0, 0.0))


def is_success(response_code: str) -> bool:
    """Whether an attempt's ``response_code`` label is a success (``ok`` or a 2xx status)."""
    code = response_code.strip().lower()
    return code == "ok" or (len(code) == 3 and code.isdigit() and code.startswith("2"))


class AttemptMonitor:
    """Reads every queue's attempt rates of a location from Cloud Monitoring."""

    def __init__(
        self,
        client: monitoring_v3.MetricServiceClient,
        project: str,
        location: str,
        timeout_s: float,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        """Ask ``client`` about ``project``'s queues in ``location``, waiting ``timeout_s`` s."""
        self._client = client
        self._project = project
        self._location = location
        self._timeout_s = timeout_s
        self._now_s = now_s

    def request(self) -> monitoring_v3.ListTimeSeriesRequest:
        """Return the ListTimeSeries request for the last :data:`LOOKBACK_S` seconds."""
        now_s = self._now_s()
        interval = monitoring_v3.TimeInterval(
            start_time=timestamp_pb2.Timestamp(seconds=int(now_s) - LOOKBACK_S),
            end_time=timestamp_pb2.Timestamp(seconds=int(now_s)),
        )
        return monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self._project}",
            filter=(
                f'metric.type = "{ATTEMPT_METRIC}" AND resource.type = "{QUEUE_RESOURCE}" '
                f'AND resource.labels.location = "{self._location}"'
            ),
            interval=interval,
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=PERIOD_S),
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_RATE,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )

    def read(self) -> AttemptRates:
        """Ask Cloud Monitoring once; never raises (a failure is in ``unavailable``)."""
        try:
            pager = self._client.list_time_series(
                request=self.request(), retry=None, timeout=self._timeout_s
            )
            return rates_of(list(pager))
        except Exception as exc:  # any failure is shown in the column, the page renders
            reason = unavailable_reason(exc, self._timeout_s)
            log.warning("queue attempt rates not read: %s", reason)
            return AttemptRates(unavailable=reason)


def rates_of(series: list[monitoring_v3.TimeSeries]) -> AttemptRates:
    """Add up ALIGN_RATE series by queue for the newest minute any of them has."""
    newest: dt.datetime | None = None
    for one in series:
        for point in one.points:
            end = point.interval.end_time
            newest = end if newest is None or end > newest else newest
    if newest is None:
        return AttemptRates()
    dispatches: dict[str, float] = {}
    retries: dict[str, float] = {}
    for one in series:
        queue_id = one.resource.labels.get("queue_id", "")
        rate = sum(_number(p.value) for p in one.points if p.interval.end_time == newest)
        dispatches[queue_id] = dispatches.get(queue_id, 0.0) + rate
        if not is_success(one.metric.labels.get("response_code", "")):
            retries[queue_id] = retries.get(queue_id, 0.0) + rate
    by_queue = {q: QueueAttemptRate(d, retries.get(q, 0.0)) for q, d in dispatches.items()}
    return AttemptRates(by_queue, newest)


def unavailable_reason(exc: Exception, timeout_s: float) -> str:
    """Return why Cloud Monitoring could not be read, and what to do about it."""
    if isinstance(exc, gexc.PermissionDenied):
        return (
            "Cloud Monitoring refused the console's account: grant it roles/monitoring.viewer "
            "(deploy/deploy.sh does)"
        )
    if isinstance(exc, gexc.DeadlineExceeded):
        return f"Cloud Monitoring did not answer within {timeout_s:g} s"
    if isinstance(exc, gexc.ServiceUnavailable):
        return f"Cloud Monitoring is unreachable: {exc.message}"
    if isinstance(exc, gexc.MethodNotImplemented):
        return "this Cloud Tasks endpoint serves no Cloud Monitoring (an older emulator?)"
    if isinstance(exc, gexc.GoogleAPICallError):
        return f"Cloud Monitoring answered {type(exc).__name__}: {exc.message}"
    return f"Cloud Monitoring could not be asked: {type(exc).__name__}: {exc}"


def _number(value: monitoring_v3.TypedValue) -> float:
    kind = monitoring_v3.TypedValue.pb(value).WhichOneof("value")
    return float(getattr(value, kind)) if kind in ("double_value", "int64_value") else 0.0
