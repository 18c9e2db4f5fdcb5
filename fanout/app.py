"""The fanout's Flask application: ``POST /fanout`` runs one fan-out.

Cloud Scheduler calls it on its schedule; the answer is the run's JSON summary.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from fanout.config import FanoutConfig
from fanout.enqueue import Enqueuer
from fanout.run import FanoutRunner
from orders.clients import firestore_client, tasks_client
from orders.logs import configure_logging

log = logging.getLogger(__name__)


def build_runner(config: FanoutConfig) -> FanoutRunner:
    """Build the clients once and the runner that uses them."""
    enqueuer = Enqueuer(
        tasks_client(config.cloud),
        config.cloud.queue_path,
        config.batches_in_flight,
        config.cloud.rpc_timeout_s,
    )
    return FanoutRunner(firestore_client(config.cloud), enqueuer, config.cloud, config.page_size)


def create_app(config: FanoutConfig | None = None) -> Flask:
    """Build the fanout app; its Firestore and Cloud Tasks clients are built once, here."""
    config = config or FanoutConfig.from_env()
    configure_logging(config.log_level)
    app = Flask(__name__)
    runner = build_runner(config)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", service="fanout")

    @app.post("/fanout")
    def fanout() -> Response:
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

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.name, message=exc.description), exc.code or 500

    return app
