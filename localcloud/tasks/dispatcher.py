"""Dispatch loops: per queue, a token bucket, a concurrency cap and HTTP worker threads.

Each queue has one loop thread that leases due tasks from the store while the
bucket has tokens and fewer than the cap are in flight, and hands them to worker
threads (each with its own HTTP session). Workers apply the queue's HTTP target
overrides and the retry policy to the outcome; a 429 or 5xx answer also slows the
whole queue (system throttling, :mod:`localcloud.tasks.throttle`): the bucket
refills at the enforced rate, which recovers as errors stop, while the configured
rate is left as it is. Any other failure backs off only its task. A paused
queue leases nothing; ``RunTask`` hands a task to the workers directly, past the
bucket, the cap and the pause. Nothing busy-waits: the loop sleeps on a
condition until the next task is due, a token is refilled, a slot is freed or a
new task arrives.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import threading
import time

import requests

from localcloud.tasks.attempt_counts import AttemptCounts
from localcloud.tasks.delivery import TokenSource, deliver, new_session, retry_reason
from localcloud.tasks.model import QUEUE_STATE_RUNNING, QueueConfig, TaskRecord
from localcloud.tasks.override import apply_override, override_from_json
from localcloud.tasks.ratelimit import TokenBucket, burst_size_for_rate
from localcloud.tasks.retry import policy_backoff_s, should_retry
from localcloud.tasks.task_store import TaskStore
from localcloud.tasks.throttle import SystemThrottle, is_overload_status

log = logging.getLogger(__name__)

DEFAULT_DISPATCH_THREADS = 64
IDLE_WAIT_S = 5.0  # safety-net wake-up of an idle loop, seconds
STOP_TIMEOUT_S = 5.0  # how long stop() waits for in-flight requests, seconds
EXECUTED_WINDOW_S = 60.0  # window of QueueStats.executed_last_minute_count, seconds


class QueueDispatcher:
    """Dispatches one queue's tasks; at most ``min(max_concurrent_dispatches, threads)`` at once."""

    def __init__(
        self,
        config: QueueConfig,
        store: TaskStore,
        tokens: TokenSource | None,
        dispatch_threads: int = DEFAULT_DISPATCH_THREADS,
        attempts: AttemptCounts | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._tokens = tokens
        self._attempts = attempts or AttemptCounts()
        self._queue_id = config.queue_id
        self._threads = dispatch_threads
        self._override = override_from_json(config.http_target)
        self.limit = max(1, min(config.max_concurrent_dispatches, dispatch_threads))
        self._cond = threading.Condition()
        self._bucket = TokenBucket(
            config.max_dispatches_per_second, config.max_burst_size, time.monotonic()
        )
        self._throttle = SystemThrottle(config.max_dispatches_per_second)
        self._in_flight = 0
        self._executed: collections.deque[float] = collections.deque()  # monotonic seconds
        self._stopping = False
        self._wake_at_s = -math.inf  # epoch seconds the loop will look again; -inf = busy
        self._work: queue.SimpleQueue[TaskRecord | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._loop = threading.Thread(
            target=self._run, name=f"tasks-dispatch-{self._queue_id}", daemon=True
        )

    @property
    def in_flight(self) -> int:
        """Requests currently being sent."""
        return self._in_flight

    @property
    def alive(self) -> bool:
        """True while the loop or any worker thread is running."""
        return self._loop.is_alive() or any(w.is_alive() for w in self._workers)

    def start(self) -> None:
        """Start the loop thread."""
        self._loop.start()

    def reconfigure(self, config: QueueConfig) -> None:
        """Apply a queue's new settings (rate, concurrency, retry, pause state) at once."""
        with self._cond:
            old, self.config = self.config, config
            self._override = override_from_json(config.http_target)
            self.limit = max(1, min(config.max_concurrent_dispatches, self._threads))
            rate_changed = (old.max_dispatches_per_second, old.max_burst_size) != (
                config.max_dispatches_per_second,
                config.max_burst_size,
            )
            if rate_changed:
                self._bucket = TokenBucket(
                    config.max_dispatches_per_second, config.max_burst_size, time.monotonic()
                )
                self._throttle.reconfigure(config.max_dispatches_per_second)
            self._cond.notify_all()

    def run_now(self, task: TaskRecord) -> None:
        """Dispatch an already leased task at once (RunTask): no token, no cap, no pause."""
        with self._cond:
            self._in_flight += 1
            self._work.put(task)
            if len(self._workers) < self._in_flight:
                self._spawn_worker()

    def activity(self) -> tuple[int, int]:
        """Return (requests in flight, attempts answered in the last 60 seconds)."""
        with self._cond:
            self._trim_executed(time.monotonic())
            return self._in_flight, len(self._executed)

    def enforced_rate(self) -> float:
        """Return the rate in force now, dispatches per second (lower while throttled)."""
        with self._cond:
            return self._throttle.rate(time.monotonic())

    def _trim_executed(self, now_s: float) -> None:
        executed = self._executed
        while executed and executed[0] <= now_s - EXECUTED_WINDOW_S:
            executed.popleft()

    def wake(self, due_s: float) -> None:
        """Tell the loop a task is due at ``due_s`` (epoch seconds)."""
        with self._cond:
            if due_s < self._wake_at_s:
                self._cond.notify()

    def request_stop(self) -> None:
        """Ask the loop to stop dispatching, without waiting.

        The loop thread then tells each worker to exit once its request is done.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the loop and the workers, waiting up to ``timeout_s`` seconds in total.

        Requests still running after that finish in the background (daemon threads).
        """
        deadline = time.monotonic() + timeout_s
        self.request_stop()
        if self._loop.ident is not None:
            self._loop.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in list(self._workers):
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    # -- loop -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                for task in batch:
                    self._work.put(task)
                while len(self._workers) < min(self._in_flight, self.limit):
                    self._spawn_worker()
        except Exception:
            log.exception("dispatch loop of queue %s crashed", self.config.name)
        finally:
            for _ in self._workers:
                self._work.put(None)

    def _next_batch(self) -> list[TaskRecord] | None:
        """Wait until tasks can be dispatched; lease and return them (None when stopping)."""
        with self._cond:
            while not self._stopping:
                self._wake_at_s = -math.inf
                capacity = self.limit - self._in_flight
                if capacity <= 0 or self.config.state != QUEUE_STATE_RUNNING:
                    self._cond.wait(IDLE_WAIT_S)  # a finishing request notifies
                    continue
                now_mono_s = time.monotonic()
                self._follow_throttle(now_mono_s)
                tokens = self._bucket.available(now_mono_s)
                if tokens < 1:
                    self._cond.wait(self._bucket.seconds_until_token() + 0.0005)
                    continue
                now_s = time.time()
                leased, next_due_s = self._store.lease_due(
                    self.config.name, now_s, min(capacity, tokens)
                )
                if leased:
                    self._bucket.take(len(leased))
                    self._in_flight += len(leased)
                    return leased
                wait_s = IDLE_WAIT_S if next_due_s is None else next_due_s - now_s
                wait_s = min(max(wait_s, 0.0005), IDLE_WAIT_S)
                self._wake_at_s = now_s + wait_s
                self._cond.wait(wait_s)
            return None

    def _follow_throttle(self, now_s: float) -> None:
        """Refill the bucket at the enforced rate (the configured one unless throttled)."""
        rate = self._throttle.rate(now_s)
        if rate != self._bucket.rate_per_s:
            capacity = min(self.config.max_burst_size, burst_size_for_rate(rate))
            self._bucket.retune(rate, max(1, capacity), now_s)

    # -- workers ----------------------------------------------------------------

    def _spawn_worker(self) -> None:
        index = len(self._workers)
        worker = threading.Thread(
            target=self._work_loop, name=f"tasks-http-{self._queue_id}-{index}", daemon=True
        )
        self._workers.append(worker)
        worker.start()

    def _work_loop(self) -> None:
        session = new_session()
        try:
            while True:
                task = self._work.get()
                if task is None:
                    return
                try:
                    self._attempt(session, task)
                except Exception:
                    log.exception("dispatch of task %s failed", task.name)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        now_s = time.monotonic()
                        self._executed.append(now_s)
                        self._trim_executed(now_s)
                        self._cond.notify()
        finally:
            session.close()

    def _attempt(self, session: requests.Session, task: TaskRecord) -> None:
        override = self._override
        sent = task if override is None else apply_override(task, override)
        result = deliver(session, sent, self._queue_id, self._tokens)
        self._attempts.record(self.config.name, result.grpc_code, result.response_time_s)
        self._follow_answer(result.http_status, result.retry_after_s)
        if result.succeeded:
            self._store.finish(task.name, result, "succeeded")
            return
        first = task.first_attempt
        first_s = first.dispatch_time_s if first is not None else result.response_time_s
        policy = task.retry
        if not should_retry(policy, task.dispatch_count, result.response_time_s - first_s):
            self._store.finish(task.name, result, "exhausted")
            return
        delay_s = policy_backoff_s(policy, task.dispatch_count)
        if result.retry_after_s is not None:
            delay_s = max(delay_s, min(result.retry_after_s, policy.max_backoff_s))
        self._store.reschedule(
            task.name, result, result.response_time_s + delay_s, retry_reason(result)
        )

    def _follow_answer(self, http_status: int | None, retry_after_s: float | None) -> None:
        """Tell the queue's throttle how the target answered (no status: no answer at all).

        A 429 or 5xx slows the whole queue (``Retry-After`` in seconds); any other
        answer counts as absorbed by the target.
        """
        if http_status is None:
            return
        with self._cond:
            if is_overload_status(http_status):
                self._throttle.overloaded(time.monotonic(), retry_after_s)
            else:
                self._throttle.absorbed(time.monotonic())


class Dispatcher:
    """Runs a :class:`QueueDispatcher` for every queue of a store.

    :attr:`attempts` counts every queue's attempts by response code, for the
    emulator's Cloud Monitoring metric.
    """

    def __init__(
        self,
        store: TaskStore,
        tokens: TokenSource | None,
        dispatch_threads: int = DEFAULT_DISPATCH_THREADS,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self.dispatch_threads = dispatch_threads
        self.attempts = AttemptCounts()
        self._lock = threading.Lock()
        self._queues: dict[str, QueueDispatcher] = {}
        self._retired: list[QueueDispatcher] = []
        self._running = False

    def start(self) -> None:
        """Listen for new tasks and start a loop for every existing queue."""
        with self._lock:
            self._running = True
        self._store.set_ready_listener(self.task_ready)
        for config in self._store.list_queues():
            self.add_queue(config)

    def add_queue(self, config: QueueConfig) -> None:
        """Start dispatching ``config``'s queue (no-op if already running or stopped)."""
        with self._lock:
            if not self._running or config.name in self._queues:
                return
            loop = QueueDispatcher(
                config, self._store, self._tokens, self.dispatch_threads, self.attempts
            )
            self._queues[config.name] = loop
        loop.start()

    def update_queue(self, config: QueueConfig) -> None:
        """Apply a queue's new settings, starting its loop if it has none yet."""
        with self._lock:
            loop = self._queues.get(config.name)
        if loop is None:
            self.add_queue(config)
        else:
            loop.reconfigure(config)

    def run_now(self, task: TaskRecord) -> None:
        """Dispatch a task leased by RunTask at once, ignoring rate limits and pause."""
        with self._lock:
            loop = self._queues.get(task.queue_name)
        if loop is not None:
            loop.run_now(task)

    def activity(self, queue_name: str) -> tuple[int, int]:
        """Return a queue's (requests in flight, attempts answered in the last minute)."""
        with self._lock:
            loop = self._queues.get(queue_name)
        return (0, 0) if loop is None else loop.activity()

    def enforced_rate(self, queue_name: str) -> float | None:
        """Return a queue's enforced rate, dispatches per second (None: no dispatch loop)."""
        with self._lock:
            loop = self._queues.get(queue_name)
        return None if loop is None else loop.enforced_rate()

    def remove_queue(self, name: str) -> None:
        """Stop dispatching a deleted queue; in-flight requests finish in the background."""
        with self._lock:
            loop = self._queues.pop(name, None)
            if loop is not None:
                self._retired = [old for old in self._retired if old.alive]
                self._retired.append(loop)
        if loop is not None:
            loop.request_stop()

    def task_ready(self, queue_name: str, due_s: float) -> None:
        """Wake a queue's loop: a task is due at ``due_s`` (epoch seconds)."""
        loop = self._queues.get(queue_name)
        if loop is not None:
            loop.wake(due_s)

    def in_flight(self) -> int:
        """Return the number of requests being sent, across all queues."""
        with self._lock:
            return sum(loop.in_flight for loop in self._queues.values())

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every loop, waiting up to ``timeout_s`` seconds for in-flight requests."""
        self._store.set_ready_listener(None)
        with self._lock:
            self._running = False
            loops = [*self._queues.values(), *self._retired]
            self._queues.clear()
            self._retired.clear()
        for loop in loops:
            loop.request_stop()
        for loop in loops:
            loop.stop(timeout_s)
