"""The local cloud's exceptions: one root, specific subclasses."""

from typing import Any


class LocalCloudError(Exception):
    """Raised when the local cloud cannot start or run something; the root of this package."""


class EmulatorMissingError(LocalCloudError):
    """Raised when the Firestore emulator (or gcloud, or Java) is not installed."""


class ProcessStartError(LocalCloudError):
    """Raised when a child process exits or does not become ready in time."""


class DemoTimeoutError(LocalCloudError):
    """Raised when the demo's orders are not all completed before its timeout."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        """Keep the report of the incomplete run beside the message."""
        super().__init__(message)
        self.report = report
