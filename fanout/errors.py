"""The fanout package's exceptions: one root, specific subclasses."""


class FanoutError(Exception):
    """Raised when a fan-out cannot run; the root of this package."""


class MarkingError(FanoutError):
    """Raised when Firestore refuses to mark an order ``queued`` for a non-retryable reason."""
