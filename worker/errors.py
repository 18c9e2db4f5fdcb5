"""The worker's exceptions: one root, specific subclasses."""


class WorkerError(Exception):
    """Raised when the worker cannot perform a task; the root of this package."""


class PermanentTaskError(WorkerError):
    """Raised when a task can never succeed; it is recorded and acknowledged with 2xx."""


class TransientTaskError(WorkerError):
    """Raised when a task may succeed later; answered with 503 so the queue retries it."""
