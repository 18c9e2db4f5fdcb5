"""The shared core's exceptions: one root, specific subclasses."""


class OrdersError(Exception):
    """Raised when the shared core cannot do what was asked; the root of this package."""


class SettingsError(OrdersError):
    """Raised when an environment variable holds a value that cannot be used."""


class TaskIdError(OrdersError):
    """Raised when a task id cannot be built from an order id, action and generation."""


class PayloadError(OrdersError):
    """Raised when a task body is not a valid task payload; the message says which field."""


class AuthError(OrdersError):
    """Raised when a caller cannot be verified; ``http_status`` is the answer it deserves."""

    http_status = 401


class MissingTokenError(AuthError):
    """Raised when a request carries no ``Authorization: Bearer`` token (answer 401)."""


class InvalidTokenError(AuthError):
    """Raised when a token is malformed, badly signed, expired, or for another audience or issuer.

    Answer 401.
    """


class ForbiddenCallerError(AuthError):
    """Raised when a valid token belongs to an identity that is not allowed (answer 403)."""

    http_status = 403


class CertsUnavailableError(AuthError):
    """Raised when the signing certificates cannot be fetched and none are cached (answer 503).

    The caller is not at fault: a 503 makes Cloud Tasks and Cloud Scheduler retry.
    """

    http_status = 503
