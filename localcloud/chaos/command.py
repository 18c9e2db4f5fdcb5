"""``localcloud chaos``: run the chaos scenarios and print what each measured."""

from __future__ import annotations

import contextlib
import functools
import json
import sys

import click

from localcloud.chaos.scenarios import SCENARIOS, Outcome, run_scenario
from localcloud.firestore_emulator import emulator_host

_option = functools.partial(click.option, show_envvar=True, show_default=True)


@click.command("chaos")
@_option(
    "--orders",
    envvar="CHAOS_ORDERS",
    type=click.IntRange(min=1),
    default=2000,
    help="Orders per scenario.",
)
@_option(
    "--scenario",
    "names",
    envvar="CHAOS_SCENARIOS",
    multiple=True,
    type=click.Choice(sorted(SCENARIOS)),
    help="Run only these (repeatable). [default: all]",
)
@_option(
    "--timeout",
    "timeout_s",
    envvar="CHAOS_TIMEOUT_SECONDS",
    type=click.FloatRange(min=1),
    default=300.0,
    help="Give a scenario up after this many seconds.",
)
@_option(
    "--json",
    "json_output",
    envvar="CHAOS_JSON",
    is_flag=True,
    help="Print one JSON object per scenario.",
)
def chaos(orders: int, names: tuple[str, ...], timeout_s: float, json_output: bool) -> None:
    """Inject each fault into the real local cloud; check nothing was lost or done twice.

    Exit status 1 when a scenario did not complete every order or broke an invariant.
    """  # fmt: skip
    chosen = [SCENARIOS[name] for name in names] or list(SCENARIOS.values())
    outcomes = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(emulator_host())  # one Firestore emulator for every scenario
        for scenario in chosen:
            click.echo(f"{scenario.name}: {scenario.description} ({orders} orders) ...", err=True)
            outcome = run_scenario(scenario, orders, timeout_s)
            outcomes.append(outcome)
            click.echo(json.dumps(outcome.to_dict()) if json_output else format_outcome(outcome))
    sys.exit(0 if all(o.passed for o in outcomes) else 1)


def format_outcome(outcome: Outcome) -> str:
    """Return one scenario's outcome as lines a person reads."""
    lines = [
        f"{outcome.scenario:<22} {'PASS' if outcome.passed else 'FAIL'}  "
        f"{outcome.completed}/{outcome.orders} completed in {outcome.seconds} s; "
        f"fault to completion {outcome.fault_to_done_s} s; "
        f"longest stretch with no completion {outcome.longest_stall_s} s"
    ]
    lines += [f"    {'ok  ' if held else 'FAIL'} {name}" for name, held in outcome.checks.items()]
    return "\n".join(lines)
