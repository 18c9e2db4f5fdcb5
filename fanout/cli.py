"""The ``fanout`` command: run a fan-out by hand (a backfill) against the configured cloud."""

from __future__ import annotations

import json
import sys

import click

from fanout.config import FanoutConfig
from fanout.run import FanoutRunner
from orders.errors import SettingsError


@click.group()
def main() -> None:
    """Fan pending orders out into Cloud Tasks tasks, by hand.

    Configuration comes from the same environment variables as the service
    (GOOGLE_CLOUD_PROJECT, TASKS_QUEUE, WORKER_URL, FIRESTORE_EMULATOR_HOST,
    CLOUD_TASKS_EMULATOR_HOST, ...); see the README.
    """


@main.command()
@click.option(
    "--page-size",
    type=click.IntRange(1, 1000),
    envvar="FANOUT_PAGE_SIZE",
    show_envvar=True,
    show_default=True,
    default=FanoutConfig.page_size,
    help="Orders read per Firestore page.",
)
def backfill(page_size: int) -> None:
    """Fan out every pending order now and print the run's JSON summary."""
    from fanout.app import build_runner  # the CLI builds the same runner as the service

    try:
        config = FanoutConfig.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    config = FanoutConfig(config.cloud, page_size, config.batches_in_flight, config.log_level)
    runner: FanoutRunner = build_runner(config)
    summary = runner.run("backfill")
    click.echo(json.dumps(summary.to_dict()))
    sys.exit(1 if summary.failed else 0)
