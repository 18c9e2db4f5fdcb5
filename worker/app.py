"""The worker's Flask application: ``POST /tasks`` performs one delivered task.

Answers, chosen for how Cloud Tasks retries (every non-2xx is retried):

- 401 / 403: the caller is not verified (no, bad or expired token, another
  audience or issuer) / not allowed (another identity, another queue);
- 200 ``done`` / ``already_done``: the action is recorded done;
- 200 ``rejected``: the task can never succeed (bad body, unknown action, missing
  order); it is recorded in ``dead_letters`` and acknowledged so it is not retried
  (a rejection that can never be recorded is acknowledged too, ``recorded: false``,
  and logged);
- 400: malformed delivery headers (a retry count that is not ASCII digits);
- 200 ``failed`` / ``already_failed``: the action can never succeed for this order
  (cancelled, insufficient stock); recorded on the order and its ledger entry;
- 409 Conflict ``busy``: another delivery holds the action's claim. Cloud Tasks
  retries it with the task's own backoff; unlike 429 and 5xx it is not an
  overload signal, so the queue is not throttled for one task's condition;
- 503 with ``Retry-After``: a transient failure (a dependency unavailable or
  overloaded); nothing was left half-done, retry later. On the queue's last
  attempt the failure (a busy claim or an unexpected error included) is first
  recorded as dead-lettered.

No answer carries an exception's text: a 500 is generic and an error wrapping
another library's exception is named by its kind; the log keeps the detail.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from orders.auth import CallerVerifier, build_verifier
from orders.clients import firestore_client
from orders.contract import TaskPayload
from orders.errors import AuthError, PayloadError
from orders.gc_tuning import settle_heap
from orders.logs import TraceMiddleware, configure_logging
from worker.config import WorkerConfig
from worker.delivery import Delivery
from worker.documents import build_store
from worker.errors import (
    BadDeliveryError,
    ClaimHeldError,
    ForeignQueueError,
    PermanentTaskError,
    TransientTaskError,
    WorkerError,
)
from worker.perform import Performer
from worker.rejections import Rejections

log = logging.getLogger(__name__)

Answer = tuple[Response, int]
INTERNAL_ERROR_MESSAGE = "unexpected error in the worker; the queue will retry the task"
TRANSIENT_ERROR_MESSAGE = "a dependency is busy or unavailable; retry later"
PERMANENT_ERROR_MESSAGE = "a dependency refused the task for good; the worker's log has why"


def create_app(config: WorkerConfig | None = None) -> Flask:
    """Build the worker app; its Firestore client and caller verifier are built once, here."""
    config = config or WorkerConfig.from_env()
    configure_logging(config.log_level)
    app = Flask(__name__)
    app.wsgi_app = TraceMiddleware(app.wsgi_app, config.cloud.project)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    store = build_store(firestore_client(config.cloud), config.rpc_timeout_s)
    performer = Performer(store, config)
    rejections = Rejections(store)
    verifier = build_verifier(config.auth_settings, "worker")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service="worker")

    @app.post("/tasks")
    def tasks() -> Answer:
        try:
            caller = _verify(verifier)
            delivery = Delivery.from_headers(request.headers, config.accepted_queues)
        except AuthError as exc:
            return _refuse(exc.http_status, exc)
        except ForeignQueueError as exc:
            return _refuse(403, exc)
        except BadDeliveryError as exc:
            return _refuse(400, exc)
        fields = {**delivery.log_fields(), "caller": caller}
        try:
            payload = _payload(config.max_body_bytes)
        except PermanentTaskError as exc:
            return _reject(rejections, delivery, str(exc), fields)
        fields.update(orderId=payload.order_id, action=payload.action)
        try:
            outcome = performer.perform(payload, delivery)
        except PermanentTaskError as exc:
            if not exc.recorded:
                return _reject(rejections, delivery, str(exc), fields, _public_reason(exc))
            log.error("action failed for good: %s", exc, extra=fields)
            return _answer(200, outcome="failed", error=_public_reason(exc), **_ids(payload))
        except TransientTaskError as exc:  # ClaimHeldError included: the holder may have died
            if delivery.is_last_attempt(config.max_attempts):
                return _dead_letter(rejections, payload, delivery, exc, fields)
            if isinstance(exc, ClaimHeldError):
                log.info("busy, asking the queue to come back: %s", exc, extra=fields)
                return _answer(409, outcome="busy", error=str(exc))
            log.warning("transient failure, asking the queue to retry: %s", exc, extra=fields)
            return _retry(exc, outcome="retry")
        except Exception as exc:
            if not delivery.is_last_attempt(config.max_attempts):
                raise  # answered 500 by the crash handler: the queue retries
            log.exception("unexpected error on the last attempt", extra=fields)
            failure = TransientTaskError(f"unexpected error {type(exc).__name__}")
            failure.__cause__ = exc  # recorded in the dead letter, kept out of the answer
            return _dead_letter(rejections, payload, delivery, failure, fields)
        log.info("%s %s", payload.action, outcome.value, extra=fields)
        return _answer(200, outcome=outcome.value, **_ids(payload))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Answer:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> Answer:
        log.exception("unexpected error; the queue will retry", extra={"path": request.path})
        # The log keeps the exception; the caller learns only that it was not its fault.
        return _answer(500, error="Internal Server Error", message=INTERNAL_ERROR_MESSAGE)

    settle_heap()  # the app and its clients are built: keep them out of the collector
    return app


def _verify(verifier: CallerVerifier | None) -> str:
    """Return the verified caller's email ("" with verification disabled)."""
    if verifier is None:
        return ""
    return verifier.verify(request.headers.get("Authorization")).email


def _payload(max_body_bytes: int) -> TaskPayload:
    """Read and parse the body; anything that can never become a task is permanent."""
    length = request.content_length
    if length is not None and length > max_body_bytes:
        raise PermanentTaskError(f"body is {length} bytes, above the {max_body_bytes}-byte limit")
    if request.mimetype != "application/json":
        raise PermanentTaskError(
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )
    try:
        return TaskPayload.from_json(request.get_data())
    except RequestEntityTooLarge:
        raise PermanentTaskError(f"body is above the {max_body_bytes}-byte limit") from None
    except PayloadError as exc:
        raise PermanentTaskError(str(exc)) from None


def _ids(payload: TaskPayload) -> dict[str, str]:
    return {"orderId": payload.order_id, "action": payload.action}


def _answer(status: int, **body: Any) -> Answer:
    return jsonify(**body), status


def _refuse(status: int, exc: Exception) -> Answer:
    """Refuse a caller or a delivery that is not the queue's (nothing is recorded)."""
    log.warning("refused a request: %s", exc, extra={"status": status})
    names = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Unavailable"}
    response, code = _answer(status, error=names.get(status, "Error"), message=str(exc))
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response, code


def _retry(exc: TransientTaskError, outcome: str) -> Answer:
    """Answer 503 with ``Retry-After`` and the reason, unless that quotes another exception."""
    response, status = _answer(503, outcome=outcome, error=_public_reason(exc))
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response, status


def _public_reason(exc: Exception) -> str:
    """Return what the caller may read of ``exc``: our own message, never a wrapped exception's.

    An error raised ``from`` another (a Firestore or HTTP client error) quotes its
    text; the log has it, the answer says only what kind of failure it was.
    """
    cause = exc.__cause__
    while isinstance(cause, WorkerError):
        cause = cause.__cause__
    if cause is None:
        return str(exc)
    if isinstance(exc, TransientTaskError):
        return TRANSIENT_ERROR_MESSAGE
    return PERMANENT_ERROR_MESSAGE


def _body_excerpt() -> str:
    try:
        return request.get_data()[:2048].decode("utf-8", errors="replace")
    except RequestEntityTooLarge:
        return ""


def _reject(
    rejections: Rejections,
    delivery: Delivery,
    reason: str,
    fields: dict[str, Any],
    public_reason: str | None = None,
) -> Answer:
    """Record a task that can never succeed and acknowledge it, so it is not retried.

    ``reason`` is recorded and logged; the answer says ``public_reason`` (by default
    ``reason``). A rejection that cannot be recorded for good is still acknowledged:
    its log line is the record. Only a transient failure to record answers 503.
    """
    answered = reason if public_reason is None else public_reason
    log.error("rejected task: %s", reason, extra=fields)
    try:
        rejections.record_rejection(delivery, reason, {**fields, "body": _body_excerpt()})
    except TransientTaskError as exc:  # Firestore is busy: the queue brings the task back
        log.warning("could not record the rejection yet: %s", exc, extra=fields)
        return _retry(exc, "retry")
    except Exception:  # the rejection itself is unrecordable: retrying cannot change that
        log.exception("could not record the rejection; this log line is its record", extra=fields)
        return _answer(200, outcome="rejected", recorded=False, error=answered)
    return _answer(200, outcome="rejected", error=answered)


def _dead_letter(
    rejections: Rejections,
    payload: TaskPayload,
    delivery: Delivery,
    exc: TransientTaskError,
    fields: dict[str, Any],
) -> Answer:
    """Record the last attempt's failure as dead-lettered, then answer as the failure deserves.

    A live claim of another delivery counts too: that delivery may have died
    and the queue will not come back, so the record says the action may be stuck.
    """
    detail = str(exc.__cause__) if exc.__cause__ is not None else ""
    cause = f" ({detail})" if detail and detail not in str(exc) else ""
    reason = f"last attempt failed: {exc}{cause}"
    log.error("dead-lettered: %s", reason, extra=fields)
    try:
        rejections.record_dead_letter(payload, delivery, reason, fields)
    except Exception as record_exc:  # Firestore may be what failed: the log keeps the record
        log.error("could not record the dead letter: %s", record_exc, extra=fields)
    return _retry(exc, outcome="dead_lettered")
