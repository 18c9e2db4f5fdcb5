"""The console's Flask application: server-rendered pages over the real APIs.

Pages: ``/`` (queues, orders by status, latest runs, dead letters),
``/queues/<id>`` (a queue and its tasks), ``/runs`` and ``/runs/<id>``,
``/orders?status=``, ``/dead-letters``. Actions are POST forms that redirect
back: pause, resume and purge a queue, run or delete a task, trigger a run.
Every page refreshes its live part itself (``static/console.js``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, redirect, render_template, request, url_for
from google.api_core import exceptions as gexc
from werkzeug.wrappers import Response

from console.attempt_rates import AttemptMonitor
from console.config import ConsoleConfig
from console.counts import OrderCounts
from console.errors import BadRequestError, ConsoleError, ForbiddenError, NotFoundError
from console.kept import KeptValue
from console.queues import QueueBoard
from console.records import Records
from console.tasks import TaskBoard
from console.trigger import FanoutTrigger, IdTokenSource, id_token_source
from orders.clients import (
    firestore_client,
    monitoring_client,
    tasks_client,
    tasks_stats_client,
)
from orders.logs import TraceMiddleware, configure_logging
from orders.schema import OrderStatus

LATEST_RUNS = 5


def create_app(config: ConsoleConfig | None = None, tokens: IdTokenSource | None = None) -> Flask:
    """Build the console; its clients are built once, here.

    ``tokens`` gives the OIDC tokens the fanout is called with (default: as
    ``CONSOLE_TRIGGER_AS`` says, from Application Default Credentials).
    """
    config = config or ConsoleConfig.from_env()
    configure_logging(config.log_level)
    app = Flask(__name__)
    app.wsgi_app = TraceMiddleware(app.wsgi_app, config.cloud.project)  # type: ignore[method-assign]
    v2 = tasks_client(config.cloud)
    queues = QueueBoard(v2, tasks_stats_client(config.cloud), config.location_path)
    tasks = TaskBoard(v2)
    records = Records(firestore_client(config.cloud))
    counts = OrderCounts(records.order_counts, config.refresh_s)
    monitor = AttemptMonitor(
        monitoring_client(config.cloud),
        config.cloud.project,
        config.cloud.location,
        config.metrics_timeout_s,
    )
    attempt_rates = KeptValue(monitor.read, config.refresh_s)
    tokens = tokens or id_token_source(config.trigger_as)
    trigger = FanoutTrigger(config.fanout_url, tokens, config.trigger_timeout_s)

    @app.context_processor
    def common() -> dict[str, Any]:
        return {
            "console": config,
            "refresh_ms": int(config.refresh_s * 1000),
            "statuses": [s.value for s in OrderStatus],
            "counted_at": counts.counted_at,
        }

    @app.before_request
    def same_site_forms_only() -> None:
        # Browsers say where a form was posted from; another site's page may not act here.
        # (Stateless, so it holds across processes and instances, unlike a per-process token.)
        if request.method == "POST" and request.headers.get("Sec-Fetch-Site", "none") not in (
            "same-origin",
            "none",
        ):
            raise ForbiddenError("actions are taken only from the console's own pages")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "console"}

    @app.get("/")
    def overview() -> str:
        return render_template(
            "overview.html",
            queues=queues.list(),
            rates=attempt_rates.get(),
            counts=counts.get(),
            runs=records.runs(LATEST_RUNS).rows,
            dead_letters=records.dead_letter_count(),
            trigger=trigger,
        )

    @app.get("/queues/<queue_id>")
    def queue(queue_id: str) -> str:
        text = request.args.get("filter", "").strip()
        token = request.args.get("page_token", "")
        return render_template(
            "queue.html",
            queue=queues.get(queue_id),
            rates=attempt_rates.get(),
            page=tasks.page(queues.path(queue_id), config.page_size, token, text),
            filter=text,
            page_token=token,
        )

    @app.post("/queues/<queue_id>/<action>")
    def queue_action(queue_id: str, action: str) -> Response:
        actions = {"pause": queues.pause, "resume": queues.resume, "purge": queues.purge}
        if action not in actions:
            raise BadRequestError(f"unknown queue action {action!r}; use pause, resume or purge")
        actions[action](queue_id)
        return _back(url_for("queue", queue_id=queue_id))

    @app.post("/queues/<queue_id>/tasks/<task_id>/<action>")
    def task_action(queue_id: str, task_id: str, action: str) -> Response:
        name = f"{queues.path(queue_id)}/tasks/{task_id}"
        if action == "run":
            tasks.run(name)
        elif action == "delete":
            tasks.delete(name)
        else:
            raise BadRequestError(f"unknown task action {action!r}; use run or delete")
        return _back(url_for("queue", queue_id=queue_id))

    @app.get("/runs")
    def runs() -> str:
        after = request.args.get("after", "")
        return render_template(
            "runs.html", page=records.runs(config.page_size, after), after=after, trigger=trigger
        )

    @app.get("/runs/<run_id>")
    def run(run_id: str) -> str:
        record = records.run(run_id)
        if record is None:
            raise NotFoundError(f"there is no run {run_id!r}; the runs page lists them")
        return render_template("run.html", run_id=run_id, run=record)

    @app.post("/runs")
    def trigger_run() -> Response:
        trigger.start()
        return redirect(url_for("runs"), code=303)

    @app.get("/orders")
    def orders() -> str:
        status = request.args.get("status", OrderStatus.FAILED.value)
        if status not in {s.value for s in OrderStatus}:
            raise BadRequestError(f"status={status!r} is not an order status")
        after = request.args.get("after", "")
        return render_template(
            "orders.html",
            status=status,
            counts=counts.get(),
            page=records.orders(status, config.page_size, after),
            after=after,
        )

    @app.get("/dead-letters")
    def dead_letters() -> str:
        after = request.args.get("after", "")
        return render_template(
            "dead_letters.html",
            total=records.dead_letter_count(),
            page=records.dead_letters(config.page_size, after),
            after=after,
        )

    @app.errorhandler(ConsoleError)
    def console_error(exc: ConsoleError) -> tuple[str, int]:
        return render_template("error.html", message=str(exc)), exc.http_status

    @app.errorhandler(gexc.GoogleAPICallError)
    def api_error(exc: gexc.GoogleAPICallError) -> tuple[str, int]:
        message = f"the Google API answered {type(exc).__name__}: {exc.message}"
        if isinstance(exc, gexc.PermissionDenied):
            message += "; the console's account lacks a role (see docs/operations.md)"
        return render_template("error.html", message=message), 502

    return app


def _back(url: str) -> Response:
    """Redirect to ``url``, or to the page the form was on when it says so."""
    target = request.form.get("back", "")
    local = target.startswith("/") and not target.startswith("//")
    return redirect(target if local else url, code=303)
