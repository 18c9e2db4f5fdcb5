"""The worker's exceptions: one root, specific subclasses."""


class WorkerError(Exception):
    """Raised when the worker cannot perform a task; the root of this package."""


class PermanentTaskError(WorkerError):
    """Raised when a task can never succeed; it is recorded and acknowledged with 2xx.

    ``recorded`` is True once the failure is written on the order (its action and
    ledger entry); otherwise the app records it in ``dead_letters``.
    """

    def __init__(self, message: str, recorded: bool = False) -> None:
        """Carry the reason and whether it has been recorded on the order already."""
        super().__init__(message)
        self.recorded = recorded


class TransientTaskError(WorkerError):
    """Raised when a task may succeed later; answered with 503 so the queue retries it."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        """Carry the reason and how many seconds the queue should wait (``Retry-After``)."""
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClaimHeldError(TransientTaskError):
    """Raised when another delivery holds a live claim on the action; retry after its lease."""


class BadDeliveryError(WorkerError):
    """Raised when the Cloud Tasks headers are malformed (answer 400)."""


class ForeignQueueError(WorkerError):
    """Raised when a delivery does not come from the configured queue (answer 403)."""
