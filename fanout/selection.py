"""Which orders a run fans out, and the Firestore query that pages them.

A scheduled run takes every ``pending`` order. A backfill may narrow that to a
``createdAt`` range, other statuses and a subset of actions, or *redrive* orders
left ``queued`` longer than a duration without completing, with the next task
generation. A selection is stored in its run record, so a continuation or a
``--resume`` pages exactly the same orders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from fanout.errors import SelectionError
from orders.schema import ACTIONS, ORDERS, OrderStatus

QUEUED_AT = "fanout.queuedAt"
READ_FIELDS = ("status", "createdAt", "fanout", "actions")  # what planning and marking read
SELECTABLE = (OrderStatus.PENDING.value, OrderStatus.QUEUED.value, OrderStatus.FAILED.value)

Cursor = list[Any]  # the ordering values of the last order handled, then its document id


@dataclass(frozen=True)
class Selection:
    """The orders one run fans out (see the module docstring).

    ``since``/``until`` bound ``createdAt`` (inclusive, exclusive). With
    ``redrive_after_s`` (seconds) the run takes ``queued`` orders whose
    ``fanout.queuedAt`` is older than that and bumps their task generation.
    """

    statuses: tuple[str, ...] = (OrderStatus.PENDING.value,)
    actions: tuple[str, ...] = ACTIONS
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    redrive_after_s: float | None = None
    redrive_before: dt.datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        """Refuse selections no query can serve, naming the bad part."""
        if not self.statuses:
            raise SelectionError("choose at least one status")
        unknown = sorted(set(self.statuses) - set(SELECTABLE))
        if unknown:
            raise SelectionError(f"status {unknown} cannot be fanned out; choose from {SELECTABLE}")
        if not self.actions:
            raise SelectionError("choose at least one action")
        bad = sorted(set(self.actions) - set(ACTIONS))
        if bad:
            raise SelectionError(f"unknown action {bad}; the actions are {', '.join(ACTIONS)}")
        for name in ("since", "until", "redrive_before"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise SelectionError(f"{name} {value} needs a time zone (e.g. 2026-01-01T00:00Z)")
        if self.since and self.until and self.since >= self.until:
            raise SelectionError(f"since {self.since} is not before until {self.until}")
        if self.redrive_after_s is not None:
            if self.redrive_after_s <= 0:
                raise SelectionError("the redrive age must be more than 0 seconds")
            if self.statuses != (OrderStatus.QUEUED.value,):
                raise SelectionError("a redrive takes queued orders only; drop the status option")
            if self.redrive_before is None:  # fixed once, so every page asks the same question
                cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self.redrive_after_s)
                object.__setattr__(self, "redrive_before", cutoff)

    @property
    def redrive(self) -> bool:
        """Tell whether this run re-enqueues stuck orders with the next generation."""
        return self.redrive_after_s is not None

    @property
    def order_field(self) -> str:
        """The field pages are ordered by before the document id."""
        return QUEUED_AT if self.redrive else "createdAt"

    def query(self, client: firestore.Client) -> firestore.Query:
        """Return the ordered query for this selection (no limit, no cursor)."""
        query = client.collection(ORDERS)
        if len(self.statuses) == 1:
            query = query.where(filter=FieldFilter("status", "==", self.statuses[0]))
        else:
            query = query.where(filter=FieldFilter("status", "in", list(self.statuses)))
        if self.redrive:
            query = query.where(filter=FieldFilter(QUEUED_AT, "<", self.redrive_before))
        else:
            if self.since is not None:
                query = query.where(filter=FieldFilter("createdAt", ">=", self.since))
            if self.until is not None:
                query = query.where(filter=FieldFilter("createdAt", "<", self.until))
        # Only the fields a run reads: less to send and to parse per page.
        query = query.select(list(READ_FIELDS))
        return query.order_by(self.order_field).order_by(FieldPath.document_id())

    @property
    def query_is_exact(self) -> bool:
        """Tell whether :meth:`query` returns only orders :meth:`admits` (no check needed)."""
        return not self.redrive or (self.since is None and self.until is None)

    def admits(self, order: dict[str, Any]) -> bool:
        """Tell whether an order read by :meth:`query` is still one to fan out.

        A redrive query cannot also filter ``createdAt`` (one range per query), so
        the range is checked here.
        """
        created = order.get("createdAt")
        if self.since is not None and (created is None or created < self.since):
            return False
        return not (self.until is not None and (created is None or created >= self.until))

    def cursor_of(self, snapshot: firestore.DocumentSnapshot) -> Cursor:
        """Return the cursor just after ``snapshot`` in this selection's order."""
        data = snapshot.to_dict() or {}
        value: Any = data.get("createdAt")
        if self.redrive:
            value = (data.get("fanout") or {}).get("queuedAt")
        return [value, snapshot.id]

    def to_record(self) -> dict[str, Any]:
        """Return the selection as run-record fields."""
        return {
            "statuses": list(self.statuses),
            "actions": list(self.actions),
            "since": self.since,
            "until": self.until,
            "redriveAfterSeconds": self.redrive_after_s,
            "redriveBefore": self.redrive_before,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Selection:
        """Rebuild a selection stored by :meth:`to_record`."""
        return cls(
            statuses=_strings(record.get("statuses"), (OrderStatus.PENDING.value,)),
            actions=_strings(record.get("actions"), ACTIONS),
            since=record.get("since"),
            until=record.get("until"),
            redrive_after_s=record.get("redriveAfterSeconds"),
            redrive_before=record.get("redriveBefore"),
        )


def _strings(value: Any, default: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if value else tuple(default)
