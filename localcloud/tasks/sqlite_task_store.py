"""The durable :class:`~localcloud.tasks.task_store.TaskStore`: SQLite in WAL mode.

Every change is one transaction, committed before the call returns, so a process
killed with SIGKILL loses nothing that was acknowledged: queues, live tasks (with
their attempt history), reserved names and lease flags are all rows. Leased tasks
(requests that were in flight) are returned to their queues by
:meth:`SqliteTaskStore.release_leases` at the next start and dispatched again, so
delivery stays at least once.

One connection serves all threads under one lock, which also makes name
de-duplication atomic. ``synchronous=NORMAL`` with WAL survives a killed process
(the operating system keeps the written pages); only a power loss could drop the
last commits. ``path=":memory:"`` gives the same store without a file. A file is
held with an exclusive lock, so a second emulator cannot dispatch the same tasks;
the operating system releases it when the process dies, even by SIGKILL.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from localcloud.tasks.errors import (
    QueueAlreadyExistsError,
    QueueNotFoundError,
    StoreInUseError,
    TaskAlreadyExistsError,
    TaskNotFoundError,
    TasksEmulatorError,
)
from localcloud.tasks.model import (
    AttemptRecord,
    AttemptResult,
    QueueConfig,
    TaskRecord,
    queue_from_json,
    queue_to_json,
    task_from_row,
    task_to_json,
)
from localcloud.tasks.task_store import (
    COUNTER_KEYS,
    DEFAULT_RESERVATION_S,
    QueueCounts,
    ReadyListener,
    TaskStore,
)

MEMORY = ":memory:"
PRUNE_INTERVAL_S = 10.0  # how often expired reservations are deleted, seconds
LOCK_TIMEOUT_S = 2.0  # how long to wait for another process's lock on the file, seconds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    name TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    schedule_s REAL NOT NULL,
    seq INTEGER NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (queue, leased, schedule_s, seq);
CREATE TABLE IF NOT EXISTS reservations (
    name TEXT PRIMARY KEY,
    expires_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_expiry ON reservations (expires_s);
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_seq ON operations (seq);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

_TASK_FIELDS = "name, body, schedule_s, leased, record"
_NAMES_PER_QUERY = 500  # names looked up in one statement (SQLite allows 32,766 parameters)
_LIVE, _RESERVED = "live", "reserved"  # why a task name is taken


def _refuse_taken(name: str, taken: str | None) -> None:
    """Raise :class:`TaskAlreadyExistsError` if ``name`` is taken (``_LIVE`` or ``_RESERVED``)."""
    if taken == _LIVE:
        raise TaskAlreadyExistsError(f"Task {name} already exists.")
    if taken == _RESERVED:
        raise TaskAlreadyExistsError(
            f"Task {name} already exists: the name of a finished or deleted task "
            "stays reserved for a while."
        )


def _row_task(row: tuple[str, bytes, float, int, str]) -> TaskRecord:
    name, body, schedule_s, leased, record = row
    return task_from_row(name, body, schedule_s, bool(leased), record)


class SqliteTaskStore(TaskStore):
    """A :class:`TaskStore` in a SQLite file (WAL), or in memory with ``path=":memory:"``.

    Finished and deleted task names stay reserved ``reservation_s`` seconds
    (wall-clock, so reservations survive a restart).
    """

    def __init__(
        self,
        path: str | Path = MEMORY,
        reservation_s: float = DEFAULT_RESERVATION_S,
        clock: Callable[[], float] = time.time,
    ):
        """Open the store at ``path``; ``clock`` (epoch seconds) times reservations."""
        self.path = str(path)
        self._clock = clock
        self.reservation_s = reservation_s
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=LOCK_TIMEOUT_S
        )
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)  # its first write takes the exclusive lock
        except sqlite3.OperationalError as exc:
            self._db.close()
            raise StoreInUseError(
                f"Cannot open the task database {self.path}: {exc} (is another emulator "
                "using it? One file serves one emulator, or both would dispatch its tasks.)"
            ) from exc
        self._lock = threading.Lock()
        self._listener: ReadyListener | None = None
        self._pruned_s = 0.0
        (seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()
        self._seq = int(seq)
        (live,) = self._db.execute("SELECT COUNT(*) FROM tasks").fetchone()
        (leased,) = self._db.execute("SELECT COUNT(*) FROM tasks WHERE leased = 1").fetchone()
        self._counts = dict.fromkeys(COUNTER_KEYS, 0)
        self._counts["queued"], self._counts["in_flight"] = int(live), int(leased)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run one IMMEDIATE transaction (rolled back on error)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database (the store is unusable afterwards)."""
        with self._lock:
            self._db.close()

    def set_ready_listener(self, listener: ReadyListener | None) -> None:
        """Register the callback told when a task is (re)scheduled."""
        self._listener = listener

    # -- queues -------------------------------------------------------------------

    def get_setting(self, key: str) -> bytes | None:
        """Return the setting ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_setting(self, key: str, value: bytes) -> None:
        """Store the setting ``key``."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    def create_queue(self, config: QueueConfig) -> None:
        """Add a queue; raise :class:`QueueAlreadyExistsError` if its name exists."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM queues WHERE name = ?", (config.name,)).fetchone():
                raise QueueAlreadyExistsError(f"Queue {config.name} already exists.")
            db.execute("INSERT INTO queues VALUES (?, ?)", (config.name, queue_to_json(config)))

    def put_queue(self, config: QueueConfig) -> bool:
        """Create or replace a queue's config; return True when it was created."""
        with self._tx() as db:
            existed = db.execute("SELECT 1 FROM queues WHERE name = ?", (config.name,)).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO queues VALUES (?, ?)", (config.name, queue_to_json(config))
            )
        return existed is None

    def get_queue(self, name: str) -> QueueConfig:
        """Return a queue's config; raise :class:`QueueNotFoundError` if unknown."""
        with self._lock:
            return self._queue(name)

    def list_queues(self, parent: str | None = None) -> list[QueueConfig]:
        """Return the queues under ``parent`` (``projects/P/locations/L``), or all, by name."""
        with self._lock:
            rows = self._db.execute("SELECT name, config FROM queues ORDER BY name").fetchall()
        prefix = None if parent is None else parent + "/queues/"
        return [
            queue_from_json(config)
            for name, config in rows
            if prefix is None or name.startswith(prefix)
        ]

    def delete_queue(self, name: str) -> None:
        """Delete a queue and its tasks (their names stay reserved)."""
        with self._tx() as db:
            self._queue(name)
            self._drop_where(db, "queue = ?", (name,))
            db.execute("DELETE FROM queues WHERE name = ?", (name,))

    def purge_queue(self, name: str) -> QueueConfig:
        """Delete every task of a queue (names stay reserved); return the updated queue."""
        with self._tx() as db:
            config = replace(self._queue(name), purge_time_s=time.time())
            self._drop_where(db, "queue = ?", (name,))
            db.execute("UPDATE queues SET config = ? WHERE name = ?", (queue_to_json(config), name))
        return config

    def queue_counts(self, name: str) -> QueueCounts:
        """Return a queue's task count and oldest schedule time (seconds since the epoch)."""
        with self._lock:
            self._queue(name)
            count, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(schedule_s) FROM tasks WHERE queue = ?", (name,)
            ).fetchone()
        return QueueCounts(int(count), None if oldest is None else float(oldest))

    # -- tasks --------------------------------------------------------------------

    def add_tasks(self, tasks: Sequence[TaskRecord]) -> list[TaskRecord | TasksEmulatorError]:
        """Add tasks in order; per task return it as stored, or the error it raised.

        One transaction for all of them: the names already taken are looked up
        together and the new rows inserted together (a batch of 100 costs three
        statements, not three per task).
        """
        results: list[TaskRecord | TasksEmulatorError] = []
        ready: list[tuple[str, float]] = []
        rows: list[tuple[str, str, float, int, bytes, str]] = []
        now_s = self._clock()
        with self._tx() as db:
            self._prune_reservations(db, now_s)
            taken = self._taken_names(db, [task.name for task in tasks], now_s)
            known: set[str] = set()
            for task in tasks:
                queue_name = task.queue_name
                try:
                    if queue_name not in known:
                        self._queue(queue_name)
                        known.add(queue_name)
                    _refuse_taken(task.name, taken.get(task.name))
                except TasksEmulatorError as exc:
                    if isinstance(exc, TaskAlreadyExistsError):
                        self._counts["deduplicated"] += 1
                    results.append(exc)
                    continue
                taken[task.name] = _LIVE
                self._seq += 1
                task.leased = False
                rows.append(
                    (
                        task.name,
                        queue_name,
                        task.schedule_time_s,
                        self._seq,
                        task.body,
                        task_to_json(task),
                    )
                )
                results.append(task)
                ready.append((queue_name, task.schedule_time_s))
            db.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?, 0, ?, ?)", rows)
            self._counts["tasks_created"] += len(rows)
            self._counts["queued"] += len(rows)
        self._notify(ready)
        return results

    def get_task(self, name: str) -> TaskRecord:
        """Return a live task; raise :class:`TaskNotFoundError` otherwise."""
        with self._lock:
            return self._task(name)

    def list_tasks(
        self, queue_name: str, after: str, limit: int
    ) -> tuple[list[TaskRecord], str | None]:
        """Return up to ``limit`` live tasks named after ``after``, and the last name if more."""
        with self._lock:
            self._queue(queue_name)
            rows = self._db.execute(
                f"SELECT {_TASK_FIELDS} FROM tasks WHERE queue = ? AND name > ? "
                "ORDER BY name LIMIT ?",
                (queue_name, after, limit + 1),
            ).fetchall()
        page = [_row_task(row) for row in rows[:limit]]
        return page, (page[-1].name if len(rows) > limit else None)

    def delete_task(self, name: str) -> None:
        """Delete a live task, reserving its name; raise :class:`TaskNotFoundError`."""
        with self._tx() as db:
            self._task(name)
            self._drop_where(db, "name = ?", (name,))
            self._counts["deleted"] += 1

    def lease_due(
        self, queue_name: str, now_s: float, limit: int
    ) -> tuple[list[TaskRecord], float | None]:
        """Lease up to ``limit`` due tasks for dispatch (see :meth:`TaskStore.lease_due`)."""
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_TASK_FIELDS} FROM tasks WHERE queue = ? AND leased = 0 "
                "AND schedule_s <= ? ORDER BY schedule_s, seq LIMIT ?",
                (queue_name, now_s, limit),
            ).fetchall()
            leased = [self._lease(db, _row_task(row), now_s) for row in rows]
            (next_due,) = db.execute(
                "SELECT MIN(schedule_s) FROM tasks WHERE queue = ? AND leased = 0", (queue_name,)
            ).fetchone()
        return leased, next_due

    def lease_task(self, name: str, now_s: float) -> TaskRecord | None:
        """Lease one task now whatever its schedule (RunTask); None if already in flight.

        Raises :class:`TaskNotFoundError` for an unknown, finished or deleted task.
        """
        with self._tx() as db:
            task = self._task(name)
            if task.leased:
                return None
            return self._lease(db, task, now_s)

    def finish(self, name: str, result: AttemptResult, outcome: str) -> None:
        """Delete a leased task that finished (``succeeded`` or ``exhausted``), reserving its name.

        A task deleted or purged while in flight is left alone.
        """
        with self._tx() as db:
            if db.execute("DELETE FROM tasks WHERE name = ? AND leased = 1", (name,)).rowcount:
                self._reserve(db, [name])
                self._counts["queued"] -= 1
                self._counts["in_flight"] -= 1
                self._counts[outcome] += 1

    def reschedule(
        self, name: str, result: AttemptResult, schedule_time_s: float, retry_reason: str
    ) -> None:
        """Record a failed attempt and schedule the next one at ``schedule_time_s``."""
        with self._tx() as db:
            task = self._leased_task(name)
            if task is None:
                return
            self._record(task, result)
            task.last_retry_reason = retry_reason
            task.schedule_time_s = schedule_time_s
            task.leased = False
            self._seq += 1
            db.execute(
                "UPDATE tasks SET schedule_s = ?, seq = ?, leased = 0, record = ? WHERE name = ?",
                (schedule_time_s, self._seq, task_to_json(task), name),
            )
            self._counts["in_flight"] -= 1
        self._notify([(task.queue_name, schedule_time_s)])

    def release_leases(self) -> int:
        """Return leased tasks to their queues (after a stop or restart); return how many."""
        with self._tx() as db:
            released = db.execute("UPDATE tasks SET leased = 0 WHERE leased = 1").rowcount
            self._counts["in_flight"] = 0
        return int(released)

    def reset_reservations(self) -> None:
        """Forget every reserved name of finished or deleted tasks."""
        with self._tx() as db:
            db.execute("DELETE FROM reservations")

    def put_operation(self, name: str, data: bytes, keep: int) -> None:
        """Store a serialized long-running operation, keeping only the newest ``keep``."""
        with self._tx() as db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM operations").fetchone()
            db.execute("INSERT OR REPLACE INTO operations VALUES (?, ?, ?)", (name, seq, data))
            db.execute("DELETE FROM operations WHERE seq <= ?", (seq - keep,))

    def get_operation(self, name: str) -> bytes | None:
        """Return a stored operation's serialized form, or None."""
        with self._lock:
            row = self._db.execute("SELECT data FROM operations WHERE name = ?", (name,))
            found = row.fetchone()
        return None if found is None else bytes(found[0])

    def counters(self) -> dict[str, int]:
        """Return the counters named in :data:`COUNTER_KEYS` (since this store was opened)."""
        with self._lock:
            return dict(self._counts)

    # -- internals (call with the lock held) ----------------------------------------

    def _queue(self, name: str) -> QueueConfig:
        row = self._db.execute("SELECT config FROM queues WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise QueueNotFoundError(f"Queue {name} does not exist.")
        return queue_from_json(row[0])

    def _task(self, name: str) -> TaskRecord:
        row = self._db.execute(f"SELECT {_TASK_FIELDS} FROM tasks WHERE name = ?", (name,))
        found = row.fetchone()
        if found is None:
            raise TaskNotFoundError(f"Task {name} does not exist (or has finished).")
        return _row_task(found)

    def _leased_task(self, name: str) -> TaskRecord | None:
        try:
            task = self._task(name)
        except TaskNotFoundError:
            return None
        return task if task.leased else None

    def _taken_names(
        self, db: sqlite3.Connection, names: list[str], now_s: float
    ) -> dict[str, str]:
        """Return which of ``names`` are taken: by a live task, or reserved at ``now_s``."""
        taken: dict[str, str] = {}
        for start in range(0, len(names), _NAMES_PER_QUERY):
            chunk = names[start : start + _NAMES_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            for (name,) in db.execute(
                f"SELECT name FROM reservations WHERE name IN ({marks}) AND expires_s > ?",
                (*chunk, now_s),
            ):
                taken[name] = _RESERVED
            for (name,) in db.execute(f"SELECT name FROM tasks WHERE name IN ({marks})", chunk):
                taken[name] = _LIVE
        return taken

    def _lease(self, db: sqlite3.Connection, task: TaskRecord, now_s: float) -> TaskRecord:
        task.leased = True
        task.dispatch_count += 1
        attempt = AttemptRecord(schedule_time_s=task.schedule_time_s, dispatch_time_s=now_s)
        if task.first_attempt is None:
            task.first_attempt = attempt
        task.last_attempt = attempt
        db.execute(
            "UPDATE tasks SET leased = 1, record = ? WHERE name = ?",
            (task_to_json(task), task.name),
        )
        self._counts["dispatches"] += 1
        self._counts["in_flight"] += 1
        if task.dispatch_count > 1:
            self._counts["retries"] += 1
        return task

    def _drop_where(self, db: sqlite3.Connection, where: str, args: tuple[str, ...]) -> None:
        """Delete the matching tasks, account for them and reserve their names."""
        rows = db.execute(f"SELECT name, leased FROM tasks WHERE {where}", args).fetchall()
        if not rows:
            return
        self._reserve(db, [name for name, _ in rows])
        db.execute(f"DELETE FROM tasks WHERE {where}", args)
        self._counts["queued"] -= len(rows)
        self._counts["in_flight"] -= sum(1 for _, leased in rows if leased)

    def _reserve(self, db: sqlite3.Connection, names: list[str]) -> None:
        """Reserve ``names`` for :attr:`reservation_s` seconds from now."""
        expires_s = self._clock() + self.reservation_s
        db.executemany(
            "INSERT OR REPLACE INTO reservations VALUES (?, ?)", [(n, expires_s) for n in names]
        )

    @staticmethod
    def _record(task: TaskRecord, result: AttemptResult) -> None:
        if result.http_status:
            task.response_count += 1
            if result.http_status < 500:
                task.execution_count += 1
        task.last_http_status = result.http_status
        if task.last_attempt is not None:
            task.last_attempt = replace(
                task.last_attempt,
                response_time_s=result.response_time_s,
                response_code=result.grpc_code,
                response_message=result.message,
            )

    def _prune_reservations(self, db: sqlite3.Connection, now_s: float) -> None:
        if now_s - self._pruned_s < PRUNE_INTERVAL_S:
            return
        self._pruned_s = now_s
        db.execute("DELETE FROM reservations WHERE expires_s <= ?", (now_s,))

    def _notify(self, ready: list[tuple[str, float]]) -> None:
        listener = self._listener
        if listener is None or not ready:
            return
        earliest: dict[str, float] = {}
        for queue_name, due_s in ready:
            if due_s < earliest.get(queue_name, float("inf")):
                earliest[queue_name] = due_s
        for queue_name, due_s in earliest.items():
            listener(queue_name, due_s)
