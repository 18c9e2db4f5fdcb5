"""The fanout package's exceptions: one root, specific subclasses."""


class FanoutError(Exception):
    """Raised when a fan-out cannot run; the root of this package."""


class MarkingError(FanoutError):
    """Raised when Firestore refuses to mark an order ``queued`` for a non-retryable reason."""


class SelectionError(FanoutError):
    """Raised when a run's choice of orders (statuses, dates, actions) cannot be served."""


class LeaseHeldError(FanoutError):
    """Raised when another run holds the fan-out lease; the message names it and its expiry."""


class RunNotFoundError(FanoutError):
    """Raised when a run id names no run record (``--resume``, a continuation)."""


class LeaseLostError(FanoutError):
    """Raised when a run finds its lease taken over (it ran past its expiry); it stops."""


class QueueGroupError(FanoutError):
    """Raised when the stored size of the queue group in force is not a usable size."""
