"""The console's exceptions: one root, a subclass per kind of failure."""

from __future__ import annotations


class ConsoleError(Exception):
    """Root of the console's errors; the page shows the message."""

    http_status = 500


class NotFoundError(ConsoleError):
    """A queue, task or run named in the URL does not exist."""

    http_status = 404


class BadRequestError(ConsoleError):
    """A form or query parameter is not valid; the message says which and why."""

    http_status = 400


class ForbiddenError(ConsoleError):
    """An action was posted from a page that is not the console's own."""

    http_status = 403


class TriggerError(ConsoleError):
    """The fanout could not be called, or refused the call."""

    http_status = 502
