"""The ``fanout`` command: backfills by hand, and triggering a deployed fanout service.

Exit status: 0 when every selected order was handled, 1 when any order failed
(or the service answered with an error, or Firestore or Cloud Tasks could not be
reached), 2 for bad arguments or settings, 3 when another run holds the fan-out
lease or the run to resume does not exist, 4 when the run stopped at its time
budget with orders left (continue it with ``--resume RUN_ID``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from typing import Any

import click
from google.api_core.exceptions import GoogleAPIError

from fanout.config import FanoutConfig
from fanout.errors import FanoutError, LeaseHeldError, RunNotFoundError
from fanout.params import Duration, Instant
from fanout.run import FanoutRunner
from fanout.selection import SELECTABLE, Selection
from fanout.summary import RunState, RunSummary
from orders.errors import SettingsError
from orders.progress import Progress
from orders.schema import ACTIONS, OrderStatus

EXIT_FAILED = 1
EXIT_BLOCKED = 3
EXIT_UNFINISHED = 4
TRIGGER_TIMEOUT_S = 1800.0  # the longest a deployed fan-out call may take, seconds


# A click option that reads its environment variable and shows it and its default in --help.
_option = functools.partial(click.option, show_envvar=True, show_default=True)


@click.group()
def main() -> None:
    """Fan pending orders out into Cloud Tasks tasks, by hand.

    The cloud settings come from the same environment variables as the service
    (GOOGLE_CLOUD_PROJECT, TASKS_QUEUE, WORKER_URL, FIRESTORE_EMULATOR_HOST,
    CLOUD_TASKS_EMULATOR_HOST, ...); see docs/configuration.md.
    """


@main.command()
@_option("--since", envvar="FANOUT_SINCE", type=Instant(), help="Only orders created at or after.")
@_option("--until", envvar="FANOUT_UNTIL", type=Instant(), help="Only orders created before.")
@_option(
    "--status",
    "statuses",
    envvar="FANOUT_STATUSES",
    multiple=True,
    type=click.Choice(SELECTABLE),
    default=(OrderStatus.PENDING.value,),
    help="Order status to select; repeat for several.",
)
@_option(
    "--action",
    "actions",
    envvar="FANOUT_ACTIONS",
    multiple=True,
    type=click.Choice(ACTIONS),
    default=ACTIONS,
    help="Action to enqueue; repeat for several.",
)
@_option(
    "--redrive-after",
    envvar="FANOUT_REDRIVE_AFTER",
    type=Duration(),
    help="Re-enqueue orders queued longer than this (e.g. 2h) with the next generation.",
)
@_option(
    "--resume", "resume_id", envvar="FANOUT_RESUME", metavar="RUN_ID", help="Continue this run."
)
@_option("--dry-run", envvar="FANOUT_DRY_RUN", is_flag=True, help="Count; write nothing.")
@_option(
    "--page-size",
    envvar="FANOUT_PAGE_SIZE",
    type=click.IntRange(1, 1000),
    default=FanoutConfig.page_size,
    help="Orders read per Firestore page.",
)
@_option(
    "--time-budget",
    envvar="FANOUT_BACKFILL_TIME_BUDGET",
    type=Duration(),
    help="Stop after about this long, checkpointed; continue with --resume.  [default: none]",
)
@_option("--json", "as_json", envvar="FANOUT_JSON", is_flag=True, help="Print JSON.")
def backfill(
    since: Any,
    until: Any,
    statuses: tuple[str, ...],
    actions: tuple[str, ...],
    redrive_after: float | None,
    resume_id: str | None,
    dry_run: bool,
    page_size: int,
    time_budget: float | None,
    as_json: bool,
) -> None:
    """Fan out the selected orders now (default: every pending order) and print a summary.

    With --redrive-after, takes the orders left queued longer than that without
    completing and enqueues their unfinished actions again under the next
    generation (finished task names stay reserved for an hour, so the old names
    cannot be reused).
    """
    from fanout.app import build_runner  # the CLI builds the same runner as the service

    try:
        config = FanoutConfig.from_env()
        if redrive_after is not None and statuses == (OrderStatus.PENDING.value,):
            statuses = (OrderStatus.QUEUED.value,)
        selection = Selection(
            statuses=statuses,
            actions=actions,
            since=since,
            until=until,
            redrive_after_s=redrive_after,
        )
    except (SettingsError, FanoutError) as exc:
        raise click.UsageError(str(exc)) from None
    if resume_id and (dry_run or redrive_after or since or until or _chosen("statuses", "actions")):
        raise click.UsageError("--resume continues a run with its own selection; drop the others")
    config = dataclasses.replace(config, page_size=page_size)
    runner = build_runner(config)
    try:
        summary = _backfill(runner, selection, resume_id, dry_run, time_budget)
    except (LeaseHeldError, RunNotFoundError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_BLOCKED)
    except (GoogleAPIError, ValueError) as exc:  # Firestore or Cloud Tasks unreachable, bad id
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(summary.to_dict()) if as_json else format_summary(summary))
    sys.exit(exit_status(summary))


def _backfill(
    runner: FanoutRunner,
    selection: Selection,
    resume_id: str | None,
    dry_run: bool,
    time_budget: float | None,
) -> RunSummary:
    """Run what the options ask for, showing progress on stderr."""
    if resume_id:
        record = runner.records.load(resume_id)
        selection = Selection.from_record(record.get("selection") or {})
    progress = Progress(runner.count(selection), "orders", sys.stderr)
    show = _show(progress)
    try:
        if dry_run:
            return runner.dry_run(selection, on_page=show)
        if resume_id:
            return runner.resume(resume_id, budget_s=time_budget or 0, on_page=show)
        return runner.run("backfill", selection, time_budget or 0, show)
    finally:
        progress.close()


def exit_status(summary: RunSummary) -> int:
    """Return the command's exit status for a run's summary (see the module docstring)."""
    if summary.state == RunState.SKIPPED.value:
        return EXIT_BLOCKED
    if summary.failed:
        return EXIT_FAILED
    if summary.state in (RunState.STOPPED.value, RunState.CONTINUING.value):
        return EXIT_UNFINISHED
    return 0


def _chosen(*names: str) -> bool:
    """Tell whether any of these options was given (on the command line or by variable)."""
    context = click.get_current_context()
    defaults = (click.core.ParameterSource.DEFAULT, None)
    return any(context.get_parameter_source(name) not in defaults for name in names)


def _show(progress: Progress) -> Any:
    return lambda summary: progress.update(summary.orders)


def format_summary(summary: RunSummary) -> str:
    """Return a run summary as lines a person reads."""
    lines = [
        f"run {summary.run_id} ({summary.trigger}, segment {summary.segment}): {summary.state}",
        f"  orders {summary.orders}  queued {summary.queued}  tasks created "
        f"{summary.tasks_created}  deduplicated {summary.deduplicated}  failed {summary.failed}",
        f"  {summary.pages} pages in {summary.seconds:.1f} s",
    ]
    if summary.message:
        lines.append(f"  {summary.message}")
    lines += [f"  failed: {f['orderId']}: {f['reason']}" for f in summary.failures]
    return "\n".join(lines)


@main.command()
@click.argument("run_id", required=False)
def status(run_id: str | None) -> None:
    """Show run RUN_ID's record (counts, failures, checkpoint) and the latest runs."""
    from fanout.status import status_report
    from orders.clients import firestore_client

    try:
        config = FanoutConfig.from_env()
        click.echo(status_report(firestore_client(config.cloud), run_id, config.cloud))
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    except RunNotFoundError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_BLOCKED)
    except (GoogleAPIError, ValueError) as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_FAILED)


@main.command("run")
@_option("--url", envvar="FANOUT_URL", required=True, help="The fanout service's base URL.")
@_option(
    "--token",
    envvar="FANOUT_ID_TOKEN",
    help="An ID token to send (e.g. $(gcloud auth print-identity-token)).  "
    "[default: fetched for --url from the application default credentials]",
)
@_option("--json", "as_json", envvar="FANOUT_JSON", is_flag=True, help="Print JSON.")
def run_remote(url: str, token: str | None, as_json: bool) -> None:
    """Trigger one fan-out on a deployed fanout service, as Cloud Scheduler would."""
    import requests

    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise click.UsageError(f"--url {url!r} must start with http:// or https://")
    token = token or _fetch_id_token(url)
    try:
        answer = requests.post(
            f"{url}/fanout", headers={"Authorization": f"Bearer {token}"}, timeout=TRIGGER_TIMEOUT_S
        )
    except requests.RequestException as exc:
        click.echo(f"Error: cannot reach {url}: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if answer.status_code != 200:
        click.echo(f"Error: {url}/fanout answered {answer.status_code}: {answer.text}", err=True)
        sys.exit(EXIT_FAILED)
    try:
        data = answer.json()
        summary = RunSummary(**data)
    except (ValueError, TypeError):
        click.echo(
            f"Error: {url}/fanout answered 200 without a run summary: {answer.text}", err=True
        )
        sys.exit(EXIT_FAILED)
    click.echo(json.dumps(data) if as_json else format_summary(summary))
    sys.exit(exit_status(summary))


def _fetch_id_token(audience: str) -> str:
    """Fetch an ID token for ``audience`` from the application default credentials."""
    import google.auth.exceptions
    import google.auth.transport.requests
    from google.oauth2 import id_token

    try:
        token: str = id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except google.auth.exceptions.GoogleAuthError as exc:
        raise click.UsageError(
            f"cannot get an ID token for {audience} ({exc}); pass one with "
            '--token "$(gcloud auth print-identity-token)"'
        ) from None
    return token
