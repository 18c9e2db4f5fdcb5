"""Atomic writes on the official Firestore client, retried only when a retry is harmless.

Both services write documents on condition: a create that must not exist, an
update or delete on condition that the document is unchanged since it was read
(its update time). :class:`Writes` collects such writes for one commit of the
official client's ``WriteBatch`` and decides how the commit may be retried.

Retries follow the library's per-method defaults (google-cloud-firestore's
generated transport): the same errors, the same backoff (0.1 s, x1.3, at most
60 s between attempts), but within ``timeout_s`` in all rather than the
library's 60 s (Commit) or 300 s (BatchGetDocuments), so that a delivery fails
over to the queue's retry well within its dispatch deadline. Passing only a
timeout to the library would not bound its default retry: a read of a
Firestore that does not answer would then retry for 300 s.

The library retries a Commit on UNAVAILABLE and RESOURCE_EXHAUSTED. An
UNAVAILABLE may come after the commit landed, so a retry could apply it twice.
A commit is therefore retried only when every write in it is safe to apply
again: a create (its must-not-exist precondition refuses a second landing), a
write carrying an update-time precondition (a landed write changed that time),
a delete, or a write without an ``Increment`` (applying it twice leaves what
applying it once left). Any other commit is sent once, without retry; its
error reaches the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore

__all__ = [
    "Writes",
    "commit_retry",
    "is_repeatable",
    "read_retry",
    "unchanged_since",
    "update_if_unchanged",
]

# The errors the library's generated transport retries, per method.
_READ_RETRIED = (gexc.DeadlineExceeded, gexc.InternalServerError, gexc.ServiceUnavailable)
_COMMIT_RETRIED = (gexc.ResourceExhausted, gexc.ServiceUnavailable)

_Write = Callable[[firestore.WriteBatch], None]


def _library_retry(errors: tuple[type[Exception], ...], timeout_s: float) -> Retry:
    return Retry(
        predicate=if_exception_type(*errors),
        initial=0.1,
        maximum=60.0,
        multiplier=1.3,
        timeout=timeout_s,
    )


def read_retry(timeout_s: float) -> Retry:
    """Return the library's retry of a document read (BatchGetDocuments), within ``timeout_s``."""
    return _library_retry(_READ_RETRIED, timeout_s)


def commit_retry(timeout_s: float) -> Retry:
    """Return the library's retry of a Commit, within ``timeout_s`` seconds in all."""
    return _library_retry(_COMMIT_RETRIED, timeout_s)


def unchanged_since(client: firestore.Client, update_time: dt.datetime) -> Any:
    """Return the write option "the document still has ``update_time``"."""
    return client.write_option(last_update_time=update_time)


def update_if_unchanged(
    client: firestore.Client,
    ref: firestore.DocumentReference,
    fields: Mapping[str, Any],
    update_time: dt.datetime,
    timeout_s: float | None = None,
) -> dt.datetime:
    """Update ``ref`` only if its update time is still ``update_time``; return the new one.

    Raises ``google.api_core.exceptions.FailedPrecondition`` if it changed
    meanwhile, NotFound if it is gone.
    """
    writes = Writes(client)
    writes.update(ref, fields, last_update_time=update_time)
    (result,) = writes.commit(timeout_s)
    update_time_after: dt.datetime = result.update_time
    return update_time_after


def is_repeatable(fields: Mapping[str, Any]) -> bool:
    """Tell whether writing ``fields`` twice leaves what writing them once left.

    Only an ``Increment`` (anywhere in the data) adds up on a second write.
    """
    for value in fields.values():
        if isinstance(value, firestore.Increment):
            return False
        if isinstance(value, Mapping) and not is_repeatable(value):
            return False
    return True


class Writes:
    """Writes for one atomic commit of the official client, in the order they were added.

    Keys of :meth:`update` are field paths as the client's ``update()`` takes
    them (build them with ``google.cloud.firestore_v1.field_path``). A
    ``Writes`` belongs to one thread until it is committed.
    """

    def __init__(self, client: firestore.Client) -> None:
        """Collect writes to commit with ``client``."""
        self._client = client
        self._writes: list[tuple[_Write, bool]] = []  # (add it to a batch, safe to apply twice)

    def __len__(self) -> int:
        """Return the number of writes added."""
        return len(self._writes)

    @property
    def retry_safe(self) -> bool:
        """Whether applying the commit twice cannot change more than applying it once."""
        return all(safe for _, safe in self._writes)

    def create(self, ref: firestore.DocumentReference, fields: Mapping[str, Any]) -> None:
        """Create ``ref`` with ``fields``; the commit fails with AlreadyExists if it exists."""
        self._writes.append((lambda batch: batch.create(ref, dict(fields)), True))

    def set(self, ref: firestore.DocumentReference, fields: Mapping[str, Any]) -> None:
        """Replace ``ref``'s fields by ``fields``, creating it if missing."""
        self._writes.append((lambda batch: batch.set(ref, dict(fields)), is_repeatable(fields)))

    def update(
        self,
        ref: firestore.DocumentReference,
        fields: Mapping[str, Any],
        last_update_time: dt.datetime | None = None,
    ) -> None:
        """Change the fields of the existing document ``ref``.

        The commit fails with NotFound if it is missing, and, when
        ``last_update_time`` is given, with FailedPrecondition if the document's
        update time is another.
        """
        if not fields:
            raise ValueError(f"an update of {ref.path} needs at least one field")
        if last_update_time is None:  # an update needs the document to exist, no more
            self._writes.append(
                (lambda batch: batch.update(ref, dict(fields)), is_repeatable(fields))
            )
            return
        option = unchanged_since(self._client, last_update_time)
        self._writes.append((lambda batch: batch.update(ref, dict(fields), option=option), True))

    def delete(
        self, ref: firestore.DocumentReference, last_update_time: dt.datetime | None = None
    ) -> None:
        """Delete ``ref``; with ``last_update_time``, only if it still has that update time."""
        option = None
        if last_update_time is not None:
            option = unchanged_since(self._client, last_update_time)
        self._writes.append((lambda batch: batch.delete(ref, option=option), True))

    def discard_last(self) -> None:
        """Take back the last write added (to add it again differently)."""
        self._writes.pop()

    def commit(self, timeout_s: float | None = None) -> list[Any]:
        """Apply every write atomically in one Commit; return one ``WriteResult`` per write.

        The commit takes at most ``timeout_s`` seconds (None: the library's
        default retry and timeout). It is retried as the library retries a
        Commit only when :attr:`retry_safe`; otherwise it is sent once. A
        refused precondition raises the API's error (AlreadyExists, NotFound,
        FailedPrecondition) and writes nothing.
        """
        batch = self._client.batch()
        for add, _ in self._writes:
            add(batch)
        retry: Any = None
        if self.retry_safe:
            retry = gapic_v1.method.DEFAULT if timeout_s is None else commit_retry(timeout_s)
        return list(batch.commit(retry=retry, timeout=timeout_s))
