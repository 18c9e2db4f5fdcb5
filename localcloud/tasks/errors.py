"""Exceptions of the Cloud Tasks emulator.

Every exception carries the gRPC status code the service answers with, so the
gRPC layer maps errors generically and ``BatchCreateTasks`` can report them as
``google.rpc.Status`` entries.
"""

from __future__ import annotations

import grpc


class TasksEmulatorError(Exception):
    """Root of the emulator's exceptions; raised when an operation cannot complete."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    @property
    def code_number(self) -> int:
        """The numeric gRPC status code (e.g. 6 for ALREADY_EXISTS)."""
        number: int = self.grpc_code.value[0]
        return number


class InvalidArgumentError(TasksEmulatorError):
    """Raised when a request field is missing, malformed or out of range."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(TasksEmulatorError):
    """Raised when a named resource does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND


class QueueNotFoundError(NotFoundError):
    """Raised when a queue name does not refer to an existing queue."""


class TaskNotFoundError(NotFoundError):
    """Raised when a task does not exist, or has finished or been deleted."""


class OperationNotFoundError(NotFoundError):
    """Raised when a long-running operation is unknown (or was evicted from memory)."""


class AlreadyExistsError(TasksEmulatorError):
    """Raised when creating a resource whose name is taken."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class QueueAlreadyExistsError(AlreadyExistsError):
    """Raised when creating a queue whose name already exists."""


class TaskAlreadyExistsError(AlreadyExistsError):
    """Raised when a task name is live or still reserved after its task finished."""


class UnimplementedError(TasksEmulatorError):
    """Raised for API methods the emulator does not serve (IAM policies, CMEK config)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class EmulatorStateError(TasksEmulatorError):
    """Raised when the emulator is used in the wrong lifecycle state (e.g. not started)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class EmulatorStartError(TasksEmulatorError):
    """Raised when the emulator cannot bind its address or start its threads."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class StoreInUseError(EmulatorStartError):
    """Raised when the task database file is locked by another emulator process."""
