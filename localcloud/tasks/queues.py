"""The queue methods of the Cloud Tasks API: create, get, list, update, pause, resume, purge.

Requests and responses are raw protobuf messages (``tasks_v2.X.pb()``). Queue
statistics exist only in the v2beta3 ``Queue`` (v2 has no ``read_mask``), so
:meth:`QueueService.get_queue_beta` and :meth:`QueueService.list_queues_beta`
serve ``v2beta3`` ``GetQueue`` and ``ListQueues`` with them (and the REST surface
uses them when a request has ``readMask``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from google.cloud import tasks_v2, tasks_v2beta3
from google.protobuf import empty_pb2, field_mask_pb2, json_format

from localcloud.tasks.dispatcher import Dispatcher
from localcloud.tasks.errors import InvalidArgumentError, QueueNotFoundError
from localcloud.tasks.model import QUEUE_STATE_PAUSED, QUEUE_STATE_RUNNING, QueueConfig
from localcloud.tasks.paging import decode_page_token, encode_page_token, page_size
from localcloud.tasks.proto_time import set_timestamp
from localcloud.tasks.queue_conversion import queue_from_pb, queue_to_pb
from localcloud.tasks.resource_names import check_location, check_queue_name
from localcloud.tasks.task_store import TaskStore

Queue = tasks_v2.Queue.pb()
BetaQueue = tasks_v2beta3.Queue.pb()
STATS_FIELD = "stats"
_UPDATABLE = frozenset({"rate_limits", "retry_config", "stackdriver_logging_config", "http_target"})
_STATE_FILTER = re.compile(r"\s*state\s*[:=]\s*(RUNNING|PAUSED|DISABLED)\s*", re.IGNORECASE)
_STATES = {"RUNNING": QUEUE_STATE_RUNNING, "PAUSED": QUEUE_STATE_PAUSED, "DISABLED": 3}
_OUTPUT_ONLY = frozenset({"name", "state", "purge_time", "rate_limits.max_burst_size"})


class QueueService:
    """Queue methods over a :class:`TaskStore`, keeping the :class:`Dispatcher` in step."""

    def __init__(self, store: TaskStore, dispatcher: Dispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher

    def create_queue(self, request: Any) -> Any:
        """CreateQueue: validate, fill in defaults, start dispatching."""
        config = queue_from_pb(request.parent, request.queue)
        self._store.create_queue(config)
        self._dispatcher.add_queue(config)
        return queue_to_pb(config, Queue)

    def put_queue(self, config: QueueConfig) -> None:
        """Create or replace a queue (start-up configuration) and apply it."""
        self._store.put_queue(config)
        self._dispatcher.update_queue(config)

    def get_queue(self, request: Any) -> Any:
        """GetQueue."""
        return queue_to_pb(self._store.get_queue(check_queue_name(request.name)), Queue)

    def list_queues(self, request: Any) -> Any:
        """ListQueues, by name, paged by opaque tokens; ``filter`` may be ``state: PAUSED``."""
        page, token = self._page(request)
        response = tasks_v2.ListQueuesResponse.pb()(next_page_token=token)
        response.queues.extend(queue_to_pb(q, Queue) for q in page)
        return response

    def _page(self, request: Any) -> tuple[list[QueueConfig], str]:
        """Return one page of a ListQueues request and the next page's token ('' at the end)."""
        state = _state_filter(request.filter)
        after, size = decode_page_token(request.page_token), page_size(request.page_size)
        location = check_location(request.parent)
        queues = [
            q
            for q in self._store.list_queues(location)
            if q.name > after and (state is None or q.state == state)
        ]
        token = encode_page_token(queues[size - 1].name) if len(queues) > size else ""
        return queues[:size], token

    def update_queue(self, request: Any) -> Any:
        """UpdateQueue: the fields named by ``update_mask`` (all when empty); creates if absent.

        Updatable: ``rate_limits``, ``retry_config``, ``http_target``,
        ``stackdriver_logging_config`` and their fields. The queue's state and
        purge time are kept.
        """
        name = check_queue_name(request.queue.name)
        location = name.rsplit("/queues/", 1)[0]
        try:
            existing: QueueConfig | None = self._store.get_queue(name)
        except QueueNotFoundError:
            existing = None
        paths = list(request.update_mask.paths)
        if paths:
            _check_paths(paths)
            base = existing or queue_from_pb(location, Queue(name=name))
            merged = queue_to_pb(base, Queue)
            merged.ClearField("purge_time")
            mask = field_mask_pb2.FieldMask(paths=paths)
            mask.MergeMessage(request.queue, merged, True, True)
            merged.rate_limits.max_burst_size = 0
        else:
            merged = Queue()
            merged.CopyFrom(request.queue)
            merged.ClearField("state")
            merged.ClearField("purge_time")
        config = queue_from_pb(location, merged)
        if existing is not None:
            config = replace(config, state=existing.state, purge_time_s=existing.purge_time_s)
        self.put_queue(config)
        return queue_to_pb(config, Queue)

    def delete_queue(self, request: Any) -> Any:
        """DeleteQueue: drop the queue and its tasks, stop its dispatch loop."""
        name = check_queue_name(request.name)
        self._store.delete_queue(name)
        self._dispatcher.remove_queue(name)
        return empty_pb2.Empty()

    def pause_queue(self, request: Any) -> Any:
        """PauseQueue: tasks can still be added, none is dispatched (RunTask still runs)."""
        return self._set_state(request.name, QUEUE_STATE_PAUSED)

    def resume_queue(self, request: Any) -> Any:
        """ResumeQueue: dispatching starts again."""
        return self._set_state(request.name, QUEUE_STATE_RUNNING)

    def purge_queue(self, request: Any) -> Any:
        """PurgeQueue: delete every task; their names stay reserved."""
        config = self._store.purge_queue(check_queue_name(request.name))
        return queue_to_pb(config, Queue)

    def _set_state(self, name: str, state: int) -> Any:
        config = replace(self._store.get_queue(check_queue_name(name)), state=state)
        self.put_queue(config)
        return queue_to_pb(config, Queue)

    # -- statistics -------------------------------------------------------------------

    def get_queue_beta(self, request: Any) -> Any:
        """v2beta3 GetQueue: the queue with statistics when ``read_mask`` has ``stats``.

        As in the API, an empty mask returns every field except ``stats``; a
        mask returns only the fields it names.
        """
        mask = _read_mask(request)
        return self._beta(self._store.get_queue(check_queue_name(request.name)), mask)

    def list_queues_beta(self, request: Any) -> Any:
        """v2beta3 ListQueues: each queue as :meth:`get_queue_beta` returns it."""
        mask = _read_mask(request)
        page, token = self._page(request)
        response = tasks_v2beta3.ListQueuesResponse.pb()(next_page_token=token)
        response.queues.extend(self._beta(config, mask) for config in page)
        return response

    def _beta(self, config: QueueConfig, mask: field_mask_pb2.FieldMask | None) -> Any:
        full = json_format.ParseDict(
            json_format.MessageToDict(queue_to_pb(config, Queue)),
            BetaQueue(),
            ignore_unknown_fields=True,
        )
        if mask is None:
            return full
        if STATS_FIELD in mask.paths:
            self._fill_stats(config, full.stats)
        trimmed = BetaQueue()
        mask.MergeMessage(full, trimmed)
        return trimmed

    def _fill_stats(self, config: QueueConfig, stats: Any) -> None:
        counts = self._store.queue_counts(config.name)
        in_flight, executed = self._dispatcher.activity(config.name)
        stats.tasks_count = counts.tasks
        if counts.oldest_schedule_s is not None:
            set_timestamp(stats.oldest_estimated_arrival_time, counts.oldest_schedule_s)
        stats.executed_last_minute_count = executed
        stats.concurrent_dispatches_count = in_flight
        running = config.state == QUEUE_STATE_RUNNING
        enforced = self._dispatcher.enforced_rate(config.name)
        rate = config.max_dispatches_per_second if enforced is None else enforced
        stats.effective_execution_rate = rate if running else 0.0


def _check_paths(paths: list[str]) -> None:
    for path in paths:
        if path in _OUTPUT_ONLY:
            raise InvalidArgumentError(f"update_mask path '{path}' is output only or immutable.")
        top = path.split(".", 1)[0]
        if top not in _UPDATABLE:
            raise InvalidArgumentError(
                f"update_mask path '{path}' is not updatable; updatable: "
                "rate_limits, retry_config, http_target, stackdriver_logging_config "
                "and their fields."
            )
        if not field_mask_pb2.FieldMask(paths=[path]).IsValidForDescriptor(Queue.DESCRIPTOR):
            raise InvalidArgumentError(f"update_mask path '{path}' is not a field of Queue.")


def _state_filter(text: str) -> int | None:
    """Return the queue state a ListQueues ``filter`` selects (None for no filter)."""
    if not text.strip():
        return None
    match = _STATE_FILTER.fullmatch(text)
    if match is None:
        raise InvalidArgumentError(
            f"Unsupported ListQueues filter '{text}': the emulator supports only "
            "'state: RUNNING', 'state: PAUSED' or 'state: DISABLED'."
        )
    return _STATES[match.group(1).upper()]


def _read_mask(request: Any) -> field_mask_pb2.FieldMask | None:
    """Return a v2beta3 request's ``read_mask`` if it names fields, after checking them."""
    if not request.HasField("read_mask") or not request.read_mask.paths:
        return None
    mask = request.read_mask
    if not mask.IsValidForDescriptor(BetaQueue.DESCRIPTOR):
        raise InvalidArgumentError(
            f"read_mask {','.join(mask.paths)} names a field that Queue does not have."
        )
    return mask
