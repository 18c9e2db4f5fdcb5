"""Cloud Monitoring's ``ListTimeSeries``, for the one Cloud Tasks metric the console reads.

``google.monitoring.v3.MetricService/ListTimeSeries`` is served on the
emulator's gRPC port, so the official ``google-cloud-monitoring`` client reads
``cloudtasks.googleapis.com/queue/task_attempt_count`` from the emulator as it
does from Google: a DELTA INT64 metric of the monitored resource
``cloud_tasks_queue`` (labels ``project_id``, ``location``, ``queue_id``), with
the metric label ``response_code``. The counts are the dispatcher's
(:class:`localcloud.tasks.attempt_counts.AttemptCounts`), one point per minute
unaligned, kept 15 minutes.

What a request may say, and anything else is ``INVALID_ARGUMENT`` naming it:

- ``filter``: terms ``KEY = "VALUE"`` joined by ``AND`` (or a space), one of them
  ``metric.type = "cloudtasks.googleapis.com/queue/task_attempt_count"``; keys
  ``resource.type`` (``cloud_tasks_queue``), ``resource.label(s).project_id``,
  ``.location``, ``.queue_id`` and ``metric.label(s).response_code``.
- ``aggregation``: no aligner (the raw minutes), or ``ALIGN_DELTA`` /
  ``ALIGN_SUM`` (attempts per period) or ``ALIGN_RATE`` (attempts per second)
  with an ``alignment_period`` of whole seconds; periods end at
  ``interval.end_time``. No cross-series reducer, no secondary aggregation.
- ``view`` FULL or HEADERS; ``page_size`` and ``page_token`` page the series.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import grpc
from google.api import metric_pb2
from google.cloud import monitoring_v3

from localcloud.tasks.attempt_counts import AttemptCounts, SeriesKey
from localcloud.tasks.errors import InvalidArgumentError
from localcloud.tasks.paging import decode_page_token, encode_page_token, page_size
from localcloud.tasks.proto_time import duration_s, set_timestamp, timestamp_s
from localcloud.tasks.service import Method, generic_handler

METRIC_SERVICE = "google.monitoring.v3.MetricService"
ATTEMPT_METRIC = "cloudtasks.googleapis.com/queue/task_attempt_count"
QUEUE_RESOURCE = "cloud_tasks_queue"
RAW_POINT_S = 60  # one unaligned point per minute, like Cloud Tasks' 60-second sampling

_Aligner = monitoring_v3.Aggregation.Aligner
_Reducer = monitoring_v3.Aggregation.Reducer
_HEADERS = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS
_Kind = metric_pb2.MetricDescriptor.MetricKind
_ValueType = metric_pb2.MetricDescriptor.ValueType
_Request = monitoring_v3.ListTimeSeriesRequest.pb()
_Response = monitoring_v3.ListTimeSeriesResponse.pb()

_TERM = re.compile(r'\s*([A-Za-z_][\w.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:AND\b)?')
_RESOURCE_LABELS = ("project_id", "location", "queue_id")
_KEYS = {
    "metric.type": "metric.type",
    "resource.type": "resource.type",
    "metric.label.response_code": "response_code",
    "metric.labels.response_code": "response_code",
    **{f"resource.label.{label}": label for label in _RESOURCE_LABELS},
    **{f"resource.labels.{label}": label for label in _RESOURCE_LABELS},
}
_ALIGNERS = {_Aligner.ALIGN_NONE, _Aligner.ALIGN_DELTA, _Aligner.ALIGN_SUM, _Aligner.ALIGN_RATE}


def parse_filter(text: str) -> dict[str, str]:
    """Return a filter's terms by key (``metric.type``, ``location``, ``response_code``...).

    Raises :class:`InvalidArgumentError` for anything but ``KEY = "VALUE"`` terms
    joined by ``AND``, for keys the emulator does not know, or without the
    task attempt metric.
    """
    terms: dict[str, str] = {}
    position = 0
    while position < len(text.rstrip()):
        match = _TERM.match(text, position)
        if match is None:
            raise InvalidArgumentError(
                f"The emulator's Cloud Monitoring understands only filters of terms "
                f'KEY = "VALUE" joined by AND; cannot read {text[position:][:80]!r} in '
                f"filter {text!r}."
            )
        key, value = match.group(1), match.group(2).replace('\\"', '"')
        if key not in _KEYS:
            raise InvalidArgumentError(
                f"The emulator's Cloud Monitoring cannot filter on {key!r}; use "
                f"{', '.join(sorted(_KEYS))}."
            )
        terms[_KEYS[key]] = value
        position = match.end()
    if terms.get("metric.type") != ATTEMPT_METRIC:
        raise InvalidArgumentError(
            f'The emulator\'s Cloud Monitoring serves only metric.type = "{ATTEMPT_METRIC}"; '
            f"filter {text!r} asks for {terms.get('metric.type', 'no metric type')!r}."
        )
    if terms.get("resource.type", QUEUE_RESOURCE) != QUEUE_RESOURCE:
        raise InvalidArgumentError(
            f'{ATTEMPT_METRIC} is a metric of resource.type = "{QUEUE_RESOURCE}", '
            f"not {terms['resource.type']!r}."
        )
    return terms


@dataclass(frozen=True)
class Alignment:
    """How points are made: the aligner and its period in seconds (0 for raw points)."""

    aligner: int
    period_s: int

    @classmethod
    def of(cls, aggregation: Any, has_aggregation: bool) -> Alignment:
        """Return the alignment a request's ``aggregation`` asks for, or raise."""
        if not has_aggregation or aggregation.per_series_aligner == _Aligner.ALIGN_NONE:
            if has_aggregation and aggregation.cross_series_reducer != _Reducer.REDUCE_NONE:
                raise InvalidArgumentError("A cross-series reducer needs a per_series_aligner.")
            return cls(_Aligner.ALIGN_NONE, 0)
        aligner = aggregation.per_series_aligner
        if aligner not in _ALIGNERS:
            raise InvalidArgumentError(
                f"aggregation.per_series_aligner {_Aligner(aligner).name} is not served by the "
                "emulator; use ALIGN_DELTA, ALIGN_SUM or ALIGN_RATE."
            )
        if aggregation.cross_series_reducer != _Reducer.REDUCE_NONE or aggregation.group_by_fields:
            raise InvalidArgumentError(
                "The emulator's Cloud Monitoring has no cross-series reducers: leave "
                "aggregation.cross_series_reducer and group_by_fields unset and add up the "
                "series yourself."
            )
        period_s = duration_s(aggregation.alignment_period)
        if period_s < 1 or period_s != int(period_s):
            raise InvalidArgumentError(
                f"aggregation.alignment_period must be whole seconds, at least 1; got {period_s}."
            )
        return cls(aligner, int(period_s))


class MetricService:
    """``ListTimeSeries`` of ``task_attempt_count`` over an :class:`AttemptCounts`."""

    def __init__(self, counts: AttemptCounts) -> None:
        """Serve the attempts counted in ``counts``."""
        self._counts = counts

    def list_time_series(self, request: Any) -> Any:
        """ListTimeSeries: one series per queue and response code with points in the interval."""
        project = _project(request.name)
        terms = parse_filter(request.filter)
        alignment = Alignment.of(request.aggregation, request.HasField("aggregation"))
        if request.HasField("secondary_aggregation"):
            raise InvalidArgumentError("The emulator serves no secondary_aggregation.")
        if not request.interval.HasField("end_time"):
            raise InvalidArgumentError("interval.end_time is required.")
        end_s = timestamp_s(request.interval.end_time)
        start_s = (
            timestamp_s(request.interval.start_time)
            if request.interval.HasField("start_time")
            else end_s
        )
        if start_s > end_s:
            raise InvalidArgumentError(
                f"interval.start_time ({start_s}) is after interval.end_time ({end_s})."
            )
        after, size = decode_page_token(request.page_token), page_size(request.page_size)
        response = _Response()
        for key in self._counts.series_keys():
            if _series_id(key) <= after or not _selected(key, project, terms):
                continue
            series = self._series(key, alignment, start_s, end_s, request.view == _HEADERS)
            if series is None:
                continue
            if len(response.time_series) == size:
                response.next_page_token = encode_page_token(
                    _series_id(_key_of(response.time_series[-1]))
                )
                break
            response.time_series.append(series)
        return response

    def _series(
        self, key: SeriesKey, alignment: Alignment, start_s: float, end_s: float, headers: bool
    ) -> Any | None:
        """Return the series of ``key`` (None when it has no point in the interval)."""
        points = self._points(key, alignment, start_s, end_s)
        if not points:
            return None
        series = monitoring_v3.TimeSeries.pb()()
        series.metric.type = ATTEMPT_METRIC
        series.metric.labels["response_code"] = key.response_code
        series.resource.type = QUEUE_RESOURCE
        series.resource.labels.update(_resource_labels(key.queue_name))
        rate = alignment.aligner == _Aligner.ALIGN_RATE
        series.metric_kind = _Kind.GAUGE if rate else _Kind.DELTA
        series.value_type = _ValueType.DOUBLE if rate else _ValueType.INT64
        series.unit = "1/s" if rate else "1"
        if headers:
            return series
        for point_start_s, point_end_s, attempts in points:
            point = series.points.add()
            set_timestamp(point.interval.end_time, point_end_s)
            if rate:
                point.value.double_value = attempts / alignment.period_s
                set_timestamp(point.interval.start_time, point_end_s)
            else:
                point.value.int64_value = attempts
                set_timestamp(point.interval.start_time, point_start_s)
        return series

    def _points(
        self, key: SeriesKey, alignment: Alignment, start_s: float, end_s: float
    ) -> list[tuple[float, float, int]]:
        """Return (start, end, attempts) of each non-empty period ending in the interval.

        Newest first. Periods end at ``end_s``, ``end_s`` - period, ... (raw points:
        at whole minutes); a period holds the attempts whose time, rounded down to
        the second, is in it.
        """
        period_s = alignment.period_s or RAW_POINT_S
        if not alignment.period_s:
            end_s = float(end_s // RAW_POINT_S * RAW_POINT_S)
        last_period = math.ceil((end_s - start_s) / period_s) - 1  # the oldest one ending > start
        attempts: dict[int, int] = {}  # period number (0: ending at end_s) -> attempts
        for second, count in self._counts.seconds(key).items():
            if second > end_s:
                continue
            period = int((end_s - second) // period_s)
            if period <= last_period:
                attempts[period] = attempts.get(period, 0) + count
        return [
            (end_s - (period + 1) * period_s, end_s - period * period_s, attempts[period])
            for period in sorted(attempts)
        ]

    def handlers(self, latency_s: float = 0.0) -> list[grpc.GenericRpcHandler]:
        """Return the generic handler of ``MetricService`` (``ListTimeSeries`` only)."""
        method = Method(self.list_time_series, _Request, _Response)
        return [generic_handler(METRIC_SERVICE, {"ListTimeSeries": method}, latency_s)]


def _project(name: str) -> str:
    match = re.fullmatch(r"projects/([^/]+)", name)
    if match is None:
        raise InvalidArgumentError(f"name must be projects/PROJECT_ID, got {name!r}.")
    return match.group(1)


def _resource_labels(queue_name: str) -> dict[str, str]:
    parts = queue_name.split("/")  # projects/P/locations/L/queues/Q
    return {"project_id": parts[1], "location": parts[3], "queue_id": parts[5]}


def _selected(key: SeriesKey, project: str, terms: dict[str, str]) -> bool:
    labels = {**_resource_labels(key.queue_name), "response_code": key.response_code}
    if labels["project_id"] != project:
        return False
    return all(terms.get(name, value) == value for name, value in labels.items())


def _series_id(key: SeriesKey) -> str:
    return f"{key.queue_name} {key.response_code}"


def _key_of(series: Any) -> SeriesKey:
    labels = series.resource.labels
    name = f"projects/{labels['project_id']}/locations/{labels['location']}/queues/"
    return SeriesKey(name + labels["queue_id"], series.metric.labels["response_code"])
