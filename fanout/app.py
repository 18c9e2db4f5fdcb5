"""The fanout's Flask application.

- ``POST /fanout``: Cloud Scheduler's trigger; runs one fan-out within the time
  budget and answers with the run's JSON summary (200, also when the run was
  skipped because another holds the lease: the next tick will pick up the work).
- ``POST /fanout/continue``: a continuation task from Cloud Tasks; runs the next
  segment of a run from its checkpoint. 503 with ``Retry-After`` while another
  segment holds the lease, so the queue retries.
- ``GET /healthz``.

Both POST endpoints verify the caller's OIDC token (401 missing or invalid,
403 wrong identity), with the same code as the worker.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from fanout.config import FanoutConfig
from fanout.continuation import CONTINUE_PATH, ContinuationRequest
from fanout.enqueue import Enqueuer
from fanout.errors import FanoutError, LeaseHeldError
from fanout.ramp import build_pacer
from fanout.run import FanoutRunner
from orders.auth import AuthSettings, CallerVerifier, build_verifier
from orders.clients import firestore_client, tasks_client
from orders.errors import AuthError, SettingsError
from orders.gc_tuning import settle_heap
from orders.logs import TraceMiddleware, configure_logging

log = logging.getLogger(__name__)


def build_runner(
    config: FanoutConfig, clock: Callable[[], dt.datetime] | None = None
) -> FanoutRunner:
    """Build the clients once and the runner that uses them (``clock``: see FanoutRunner)."""
    tasks = tasks_client(config.cloud)
    db = firestore_client(config.cloud)
    enqueuer = Enqueuer(
        tasks,
        config.cloud.queue_path,
        max(config.batches_in_flight, config.cloud.queue_count),  # every queue fed at once
        config.cloud.rpc_timeout_s,
        build_pacer(db, config.max_creates_per_s, config.ramp_start_per_s),
        config.max_task_bytes,
    )
    return FanoutRunner(db, tasks, enqueuer, config, clock)


def fanout_auth_settings(config: FanoutConfig) -> AuthSettings:
    """Who may call the fanout: Cloud Scheduler's account and the continuation invoker.

    The audience defaults to ``FANOUT_URL``; the allow-list to
    ``SCHEDULER_INVOKER_EMAIL`` plus ``FANOUT_CONTINUATION_INVOKER_EMAIL``.
    """
    settings = AuthSettings.from_env(
        default_audience=config.fanout_url,
        default_allowed_emails=tuple(
            email for email in (config.scheduler_invoker_email, config.continuation_email) if email
        ),
    )
    if not settings.disabled and not settings.audience:
        raise SettingsError(
            "the fanout verifies callers against its own URL: set FANOUT_URL (or AUTH_AUDIENCE)"
        )
    return settings


def create_app(config: FanoutConfig | None = None, auth: AuthSettings | None = None) -> Flask:
    """Build the fanout app; its Firestore and Cloud Tasks clients are built once, here."""
    config = config or FanoutConfig.from_env()
    configure_logging(config.log_level)
    verifier = build_verifier(auth or fanout_auth_settings(config), "fanout")
    app = Flask(__name__)
    app.wsgi_app = TraceMiddleware(app.wsgi_app, config.cloud.project)  # type: ignore[method-assign]
    runner = build_runner(config)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service="fanout")

    @app.post("/fanout")
    def fanout() -> Response:
        _verify(verifier)
        trigger = "scheduler" if request.headers.get("X-CloudScheduler") == "true" else "http"
        log.info(
            "fan-out requested",
            extra={
                "trigger": trigger,
                "jobName": request.headers.get("X-CloudScheduler-JobName", ""),
                "scheduleTime": request.headers.get("X-CloudScheduler-ScheduleTime", ""),
            },
        )
        return jsonify(runner.run(trigger).to_dict())

    @app.post(CONTINUE_PATH)
    def continue_run() -> Response | tuple[Response, int, dict[str, str]]:
        """Run the next segment; a continuation that can never work is acknowledged."""
        _verify(verifier)
        try:
            work = ContinuationRequest.from_json(request.get_data())
            summary = runner.resume(work.run_id, work.segment)
        except LeaseHeldError as exc:
            retry_s = str(math.ceil(config.lease_s))
            body = jsonify(error="Lease Held", message=str(exc))
            return body, 503, {"Retry-After": retry_s}
        except FanoutError as exc:  # malformed, or a run that does not exist
            # Acknowledged: the queue retries any other answer, and this one can never work.
            log.error("continuation rejected: %s", exc)
            return jsonify(outcome="rejected", error=str(exc))
        return jsonify(summary.to_dict())

    @app.errorhandler(AuthError)
    def auth_error(exc: AuthError) -> tuple[Response, int]:
        log.warning("caller refused: %s", exc, extra={"path": request.path})
        return jsonify(error=type(exc).__name__, message=str(exc)), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("fan-out failed: %r", exc, extra={"path": request.path})
        message = f"{type(exc).__name__}: {exc}; the run record has the details"
        return jsonify(error="Internal Server Error", message=message), 500

    settle_heap()  # the app and its clients are built: keep them out of the collector
    return app


def _verify(verifier: CallerVerifier | None) -> None:
    """Verify the request's caller (raises an AuthError), unless verification is off."""
    if verifier is not None:
        caller = verifier.verify(request.headers.get("Authorization"))
        log.info("caller verified", extra={"caller": caller.email, "path": request.path})
