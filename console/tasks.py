"""Tasks of a queue, one page at a time: which order and action, attempts, last response.

ListTasks has no filter, so a filter is applied to the tasks as they are paged:
one request reads at most :data:`MAX_SCANNED` tasks and hands back a token to
go on from, so a page stays quick whatever the queue holds.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from console.errors import NotFoundError
from orders.contract import decode_order_id
from orders.errors import TaskIdError

MAX_SCANNED = 5000  # tasks read for one filtered page at most
SCAN_PAGE = 1000  # ListTasks' maximum page size
# orders.contract.task_id: HASH-ENCODED_ORDER_ID-ACTION-gGENERATION
_TASK_ID = re.compile(r"^[0-9a-f]{8}-(?P<order>.+)-(?P<action>[a-z][a-z0-9_]*)-g\d+$")


@dataclass(frozen=True)
class TaskView:
    """One task: its ids, the order and action in its body, and its attempts so far."""

    name: str
    order_id: str
    action: str
    dispatch_count: int
    response_count: int
    last_status: str
    schedule_time: dt.datetime | None
    create_time: dt.datetime | None

    @property
    def task_id(self) -> str:
        """The task's short id (the last part of its name)."""
        return self.name.rsplit("/", 1)[-1]

    def matches(self, text: str) -> bool:
        """Tell whether ``text`` is in the task id, order id or action."""
        return any(text in value for value in (self.task_id, self.order_id, self.action))


@dataclass(frozen=True)
class TaskPage:
    """One page of tasks and the token of the next ("" at the end)."""

    tasks: list[TaskView]
    next_token: str
    scanned: int


def _when(raw: object, field: str) -> dt.datetime | None:
    if not raw.HasField(field):  # type: ignore[attr-defined]
        return None
    stamp = getattr(raw, field)
    return dt.datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, dt.UTC)


def order_and_action(task_id: str) -> tuple[str, str]:
    """Return the order id and action a task id names (``("", "")`` for other tasks).

    Read from the id, not the body: listing bodies needs ``cloudtasks.tasks.fullView``,
    which only roles that may also create tasks grant. An order id too long to
    be kept whole in the id is shown as far as it was kept.
    """
    match = _TASK_ID.match(task_id)
    if match is None:
        return "", ""
    try:
        return decode_order_id(match["order"]), match["action"]
    except TaskIdError:
        return match["order"], match["action"]


def task_view(task: tasks_v2.Task) -> TaskView:
    """Return the view of a task (the BASIC view has everything shown)."""
    raw = tasks_v2.Task.pb(task)
    order_id, action = order_and_action(raw.name.rsplit("/", 1)[-1])
    status = ""
    if raw.HasField("last_attempt") and raw.last_attempt.HasField("response_status"):
        response = raw.last_attempt.response_status
        status = f"{response.code} {response.message}".strip()
    return TaskView(
        name=raw.name,
        order_id=order_id,
        action=action,
        dispatch_count=raw.dispatch_count,
        response_count=raw.response_count,
        last_status=status,
        schedule_time=_when(raw, "schedule_time"),
        create_time=_when(raw, "create_time"),
    )


class TaskBoard:
    """Lists, runs and deletes tasks with one v2 client."""

    def __init__(self, client: tasks_v2.CloudTasksClient) -> None:
        """Use ``client`` for every call."""
        self._client = client

    def page(self, queue_path: str, page_size: int, token: str = "", text: str = "") -> TaskPage:
        """Return up to ``page_size`` tasks from ``token`` on, only those matching ``text``."""
        found: list[TaskView] = []
        scanned = 0
        while True:
            size = page_size if not text else SCAN_PAGE
            request = tasks_v2.ListTasksRequest(
                parent=queue_path,
                page_size=size,
                page_token=token,
            )
            try:
                response = next(iter(self._client.list_tasks(request=request).pages))
            except gexc.NotFound:
                raise NotFoundError(f"there is no queue {queue_path}") from None
            views = [task_view(task) for task in response.tasks]
            scanned += len(views)
            found.extend(v for v in views if not text or v.matches(text))
            token = response.next_page_token
            if not text or not token or len(found) >= page_size or scanned >= MAX_SCANNED:
                return TaskPage(found, token, scanned)

    def run(self, task_name: str) -> None:
        """Dispatch the task now, whatever its schedule."""
        try:
            self._client.run_task(name=task_name)
        except gexc.NotFound:
            raise _gone(task_name) from None

    def delete(self, task_name: str) -> None:
        """Delete the task (its name stays reserved for a while, as in Cloud Tasks)."""
        try:
            self._client.delete_task(name=task_name)
        except gexc.NotFound:
            raise _gone(task_name) from None


def _gone(task_name: str) -> NotFoundError:
    return NotFoundError(f"task {task_name} no longer exists (it may have finished)")
