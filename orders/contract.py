"""The task contract between fanout and worker: task names, ids and the JSON body.

A task is named deterministically from (order id, action, generation) so that a
re-created task is refused by the queue with ``ALREADY_EXISTS``. The id is::

    {hash8}-{encoded order id}-{action}-g{generation}

``hash8`` is the first 8 hex digits of a SHA-256 over the three parts, so ids do
not share sequential prefixes (Google documents those as slow). The order id is
encoded injectively into ``[A-Za-z0-9_]``: ASCII letters and digits stay, every
other UTF-8 byte becomes ``_`` and two lowercase hex digits. The encoding never
emits ``-``, so the four fields split unambiguously and different inputs give
different ids. When that would exceed Cloud Tasks' 500-character limit the id
becomes ``{hash8}-{encoded prefix}-x{sha256 of the order id}-{action}-g{generation}``:
five fields instead of four, so the long form never equals a short one, and two
long forms differ unless SHA-256 collides.

A body (:meth:`TaskPayload.from_json`) is refused with :class:`PayloadError`,
naming the field, unless its strings are text UTF-8 can carry (JSON can escape a
lone UTF-16 surrogate, which is not) and ``generation`` is 0 to 2^63-1 (what
Firestore stores); malformed or too deeply nested JSON is refused too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.cloud import tasks_v2
from google.protobuf import duration_pb2

from orders.errors import PayloadError, TaskIdError
from orders.queue_group import queue_for_task
from orders.settings import CloudSettings

MAX_TASK_ID_CHARS = 500
HASH_PREFIX_CHARS = 8
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")
_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON may escape them; UTF-8 cannot carry them
MAX_GENERATION = 2**63 - 1  # Firestore integers are signed 64-bit


def encode_order_id(order_id: str) -> str:
    """Encode any order id injectively into ``[A-Za-z0-9_]`` (see the module docstring)."""
    if order_id.isascii():  # one character, one UTF-8 byte: a table does it
        return order_id if order_id.isalnum() else order_id.translate(_ASCII_ESCAPES)
    return "".join(chr(b) if b in _PLAIN else f"_{b:02x}" for b in order_id.encode("utf-8"))


_ASCII_ESCAPES = {b: f"_{b:02x}" for b in range(128) if b not in _PLAIN}


def decode_order_id(encoded: str) -> str:
    """Invert :func:`encode_order_id`; raise :class:`TaskIdError` on text it cannot produce."""
    out = bytearray()
    i = 0
    while i < len(encoded):
        char = encoded[i]
        if char == "_":
            match = _ESCAPE.match(encoded, i)
            if match is None:
                raise TaskIdError(f"bad escape at position {i} of {encoded!r}")
            out.append(int(match.group(1), 16))
            i += 3
        elif ord(char) in _PLAIN:
            out.append(ord(char))
            i += 1
        else:
            raise TaskIdError(f"character {char!r} at position {i} is not in the encoding")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskIdError(f"{encoded!r} does not decode to UTF-8 text: {exc}") from None


def task_id(order_id: str, action: str, generation: int) -> str:
    """Return the deterministic task id for one action of one order at a generation."""
    if not order_id:
        raise TaskIdError("order id is empty; every order needs a document id")
    if not ACTION_PATTERN.match(action):
        raise TaskIdError(f"action {action!r} must match {ACTION_PATTERN.pattern}")
    if generation < 0:
        raise TaskIdError(f"generation {generation} must be 0 or more")
    digest = hashlib.sha256(f"{order_id}\0{action}\0{generation}".encode()).hexdigest()
    prefix = digest[:HASH_PREFIX_CHARS]
    tail = f"{action}-g{generation}"
    encoded = encode_order_id(order_id)
    short = f"{prefix}-{encoded}-{tail}"
    if len(short) <= MAX_TASK_ID_CHARS:
        return short
    full = "x" + hashlib.sha256(order_id.encode("utf-8")).hexdigest()
    room = MAX_TASK_ID_CHARS - len(prefix) - len(full) - len(tail) - 3
    kept = encoded[:room]
    cut = kept.rfind("_", max(0, len(kept) - 2))
    if cut != -1:  # never keep half an escape
        kept = kept[:cut]
    return f"{prefix}-{kept}-{full}-{tail}"


@dataclass(frozen=True)
class TaskPayload:
    """The JSON body of a task: which action of which order, from which run."""

    order_id: str
    action: str
    generation: int
    run_id: str

    def to_json(self) -> bytes:
        """Serialize to the JSON body sent to the worker.

        The same bytes as ``json.dumps`` of the dict with compact separators, put
        together from the encoded strings (a fan-out serializes millions).
        """
        return (
            f'{{"orderId":{_json_string(self.order_id)},"action":{_json_string(self.action)},'
            f'"generation":{int(self.generation)},"runId":{_json_string(self.run_id)}}}'
        ).encode()

    @classmethod
    def from_json(cls, body: bytes) -> TaskPayload:
        """Parse and validate a task body; :class:`PayloadError` names the bad field."""
        try:
            data: Any = json.loads(body)
        except ValueError as exc:  # bad UTF-8 or JSON, or an integer of over 4,300 digits
            raise PayloadError(f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise PayloadError("body is JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise PayloadError("body must be a JSON object with orderId, action, generation, runId")
        order_id = _field(data, "orderId", str)
        action = _field(data, "action", str)
        generation = _field(data, "generation", int)
        run_id = _field(data, "runId", str)
        if not order_id:
            raise PayloadError("field 'orderId' is empty")
        if not 0 <= generation <= MAX_GENERATION:
            raise PayloadError(
                f"field 'generation' is {generation}; it must be 0 or more and at most "
                f"{MAX_GENERATION} (a signed 64-bit integer)"
            )
        return cls(order_id=order_id, action=action, generation=generation, run_id=run_id)


_json_string = json.JSONEncoder().encode  # a str as a JSON string, as json.dumps writes it


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise PayloadError(f"field {name!r} is missing")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadError(f"field {name!r} must be a {kind.__name__}, got {_excerpt(value)}")
    surrogate = _SURROGATE.search(value) if isinstance(value, str) else None
    if surrogate is not None:
        raise PayloadError(
            f"field {name!r} has a lone UTF-16 surrogate at character {surrogate.start()}: "
            "it is not text"
        )
    return value


def _excerpt(value: Any) -> str:
    """Return ``repr(value)``, cut to 100 characters (a bad field may be huge)."""
    text = repr(value)
    return text if len(text) <= 100 else f"{text[:100]}... ({len(text)} characters)"


def task_name(settings: CloudSettings, payload: TaskPayload, queue_count: int = 0) -> str:
    """Return the full resource name of the task carrying ``payload``.

    The queue is the one of the group of ``queue_count`` queues (default: the
    settings' group) that the task id maps to (:mod:`orders.queue_group`).
    """
    short_id = task_id(payload.order_id, payload.action, payload.generation)
    queue = queue_for_task(settings.queue, queue_count or settings.queue_count, short_id)
    return f"{settings.queue_path_of(queue)}/tasks/{short_id}"


def build_task(
    settings: CloudSettings,
    payload: TaskPayload,
    headers: Mapping[str, str] | None = None,
    queue_count: int = 0,
) -> tasks_v2.Task:
    """Build the named HTTP task for ``payload``: JSON body, OIDC token, dispatch deadline.

    ``headers`` are added to the task's HTTP request (a run's trace headers).
    ``queue_count`` is the size of the queue group the task goes to (default:
    the settings' own, ``TASKS_QUEUE_COUNT``).

    Every task of one configuration (and one run's headers) differs only in its
    name and body, so each is a copy of one template with those two set, on the
    raw protobuf (a fan-out builds hundreds of thousands of them).
    """
    raw = _raw_task_type()()
    raw.CopyFrom(_template(settings, tuple(headers.items()) if headers else ()))
    raw.name = task_name(settings, payload, queue_count)
    raw.http_request.body = payload.to_json()
    return tasks_v2.Task.wrap(raw)


@functools.cache
def _raw_task_type() -> Any:
    """Return the protobuf class under ``tasks_v2.Task``."""
    return tasks_v2.Task.pb()


@functools.lru_cache(maxsize=8)  # a run's tasks share their trace headers
def _template(settings: CloudSettings, headers: tuple[tuple[str, str], ...]) -> Any:
    """Return the raw protobuf every task of ``settings`` with ``headers`` is copied from."""
    task = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=settings.task_url,
            headers={"Content-Type": "application/json", **dict(headers)},
            oidc_token=tasks_v2.OidcToken(
                service_account_email=settings.invoker_email,
                audience=settings.worker_url,
            ),
        ),
        dispatch_deadline=duration_pb2.Duration(seconds=int(settings.dispatch_deadline_s)),
    )
    return tasks_v2.Task.pb(task)
