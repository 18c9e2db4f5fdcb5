"""The shared core's exceptions: one root, specific subclasses."""


class OrdersError(Exception):
    """Raised when the shared core cannot do what was asked; the root of this package."""


class SettingsError(OrdersError):
    """Raised when an environment variable holds a value that cannot be used."""


class TaskIdError(OrdersError):
    """Raised when a task id cannot be built from an order id, action and generation."""


class PayloadError(OrdersError):
    """Raised when a task body is not a valid task payload; the message says which field."""
