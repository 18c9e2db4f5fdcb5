"""The worker's Flask application: ``POST /tasks`` performs one delivered task.

Answers, chosen for how Cloud Tasks retries (every non-2xx is retried):

- 200 ``done`` / ``already_done``: the action is recorded done;
- 200 ``rejected``: the task can never succeed (bad body, unknown action, missing
  order); it is recorded in ``dead_letters`` and acknowledged so it is not retried;
- 503 with ``Retry-After``: a transient failure; nothing was written, retry later.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from orders.clients import firestore_client
from orders.contract import TaskPayload
from orders.errors import PayloadError
from orders.logs import configure_logging
from worker.config import WorkerConfig
from worker.errors import PermanentTaskError, TransientTaskError
from worker.perform import Performer

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1


def create_app(config: WorkerConfig | None = None) -> Flask:
    """Build the worker app; its Firestore client is built once, here."""
    config = config or WorkerConfig.from_env()
    configure_logging(config.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    performer = Performer(firestore_client(config.cloud))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service="worker")

    @app.post("/tasks")
    def tasks() -> tuple[Response, int] | Response:
        task = _task_headers()
        if request.mimetype != "application/json":
            return _reject(
                performer, f"Content-Type must be application/json, got {request.mimetype!r}", task
            )
        try:
            payload = TaskPayload.from_json(request.get_data())
            outcome = performer.perform(payload)
        except PayloadError as exc:
            return _reject(performer, str(exc), task)
        except PermanentTaskError as exc:
            return _reject(performer, str(exc), task)
        except TransientTaskError as exc:
            log.warning("transient failure, asking the queue to retry: %s", exc, extra=task)
            response = jsonify(outcome="retry", error=str(exc))
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response, 503
        log.info(
            "%s %s for order %s",
            payload.action,
            outcome.value,
            payload.order_id,
            extra={**task, "orderId": payload.order_id, "action": payload.action},
        )
        return jsonify(outcome=outcome.value, orderId=payload.order_id, action=payload.action)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    return app


def _task_headers() -> dict[str, Any]:
    """Return the Cloud Tasks delivery headers worth logging."""
    return {
        "taskName": request.headers.get("X-CloudTasks-TaskName", ""),
        "queueName": request.headers.get("X-CloudTasks-QueueName", ""),
        "retryCount": request.headers.get("X-CloudTasks-TaskRetryCount", ""),
    }


def _reject(performer: Performer, reason: str, task: dict[str, Any]) -> tuple[Response, int]:
    """Record a task that can never succeed and acknowledge it, so it is not retried."""
    log.error("rejected task: %s", reason, extra=task)
    body = request.get_data()[:2048].decode("utf-8", errors="replace")
    try:
        performer.record_rejection(reason, {**task, "body": body})
    except Exception as exc:  # recording must not turn a rejection into a crash
        log.error("could not record the rejection: %s", exc, extra=task)
        response = jsonify(outcome="retry", error=f"{reason}; and recording it failed: {exc}")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response, 503
    return jsonify(outcome="rejected", error=reason), 200
