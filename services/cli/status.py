"""`newsflow status` and `newsflow trace`: the operator's view of the system and of one drop."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from services.cli.system import command
from shared.status import Status, current_status
from shared.trace import trace_drop

WATCH_INTERVAL_S = 2.0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def render(status: Status) -> Group:
    stages = Table(title="stages", title_justify="left")
    for column in ("stage", "depth", "unfinished", "oldest", "consumers"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for name, s in status["stages"].items():
        stages.add_row(name, "?" if s["depth"] is None else str(s["depth"]), str(s["unfinished"]),
                       _age(s["oldest_age_s"]), str(s["consumers"]) if s["consumers"] else "[red]0[/red]")
    workers = Table(title="workers", title_justify="left")
    for column in ("node", "service", "queues", "processes", "running", "seen"):
        workers.add_column(column)
    for w in status["workers"]:
        workers.add_row(w["hostname"], w["service"], ",".join(w["queues"]) or "-", str(w["concurrency"]),
                        str(w["active"]), f"{_age(w['last_seen_s'])} ago")
    rates = Table(title="per minute", title_justify="left")
    for column in ("", "last 1m", "5m", "15m"):
        rates.add_column(column, justify="left" if not column else "right")
    for kind, per_window in status["rates"].items():
        rates.add_row(kind, *(f"{v:g}" for v in per_window.values()))
    totals = status["totals"]
    lag = status["lag_s"]
    lines = [
        "totals: " + ", ".join(f"{k} {v}" for k, v in sorted(totals["drops"].items()))
        + f"; articles {totals['articles']}, enriched {totals['enriched']}"
        + (f", enrichment failed {totals['enrichment_failed']}" if totals["enrichment_failed"] else "")
        + f"; database {totals['database_bytes'] / 2**20:,.0f} MiB, original bytes kept "
          f"{totals['kept_bytes'] / 2**20:,.0f} MiB",
        f"lag (discovered -> stored p50/p95): {_age(lag['stored']['p50'])} / {_age(lag['stored']['p95'])}; "
        f"-> enriched: {_age(lag['enriched']['p50'])} / {_age(lag['enriched']['p95'])}",
    ]
    backlog = [f"{status} {reason} {n}" for status, reasons in status["replay_backlog"].items()
               for reason, n in sorted(reasons.items())]
    lines.append("replay backlog: " + (", ".join(backlog) if backlog else "none"))
    silent = [s["source"] for s in status["sources"] if s["silent"]]
    lines.append(f"sources: {len(status['sources'])} seen in 7 days"
                 + (f", [red]silent: {', '.join(silent)}[/red]" if silent else ", none silent"))
    return Group(stages, workers, rates, *lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status object (SPEC section 7) as JSON.")
@click.option("--watch", is_flag=True, help=f"Refresh in place every {WATCH_INTERVAL_S:g} s until Ctrl-C.")
def status(as_json: bool, watch: bool) -> None:
    """The operator view: every stage's depth, unfinished work and oldest age, workers, totals, rates, lag,
    the replay backlog and silent sources."""
    with command(log_level="WARNING") as cmd:
        if as_json:
            click.echo(json.dumps(current_status(cmd.runtime), indent=2))
            return
        console = Console()
        if not watch:
            console.print(render(current_status(cmd.runtime)))
            return
        with Live(render(current_status(cmd.runtime)), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(WATCH_INTERVAL_S)
                    live.update(render(current_status(cmd.runtime)), refresh=True)
            except KeyboardInterrupt:
                pass


@click.command()
@click.argument("what")
@click.option("--json", "as_json", is_flag=True, help="Print the journey as JSON.")
def trace(what: str, as_json: bool) -> None:
    """The journey of one drop (WHAT: its id, or a path: its latest drop), from discovery to enrichment."""
    with command(log_level="WARNING") as cmd, cmd.runtime.sessions() as session:
        journey = trace_drop(session, what)
    if journey is None:
        raise click.ClickException(f"no drop {'with id' if what.isdigit() else 'for the path'} {what}")
    if as_json:
        click.echo(json.dumps(journey, indent=2, default=str))
        return
    click.echo(f"drop {journey['drop_id']}: {journey['path']}")
    for at, event in journey["events"]:
        click.echo(f"  {at}  {event}")
    for key in ("article", "duplicates", "cluster", "enrichment"):
        if journey.get(key) is not None:
            click.echo(f"  {key}: {_plain(journey[key])}")


def _plain(value: Any) -> str:
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
