"""`newsflow`: run the system, one service, or an operator or consumer command."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path

import click

from services.cli.backfill import backfill as run_backfill
from services.cli.ingest import (
    IngestReport,
    Waiter,
    collect_problems,
    enqueue_paths,
    format_report,
    wait_until_enriched,
    wait_until_terminal,
)
from services.cli.keys import keys
from services.cli.operator import audit, prune, replay
from services.cli.status import status, trace
from services.cli.system import command, local_services, start_local_services
from shared.celery_app import wait_for_nodes
from shared.clusters import cluster_sizes, rebuild
from shared.db import transaction
from shared.errors import SystemFailure
from shared.export import iter_articles, iter_drops
from shared.keys import Role, create_key
from shared.processes import Supervisor, child_env, exec_service, stop_on_signals, supervise
from shared.settings import API_PORT, ENRICHMENT_VERSION

log = logging.getLogger("newsflow")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """newsflow: news drops in, clean, deduplicated articles out, in PostgreSQL."""


@cli.command()
@click.option("--drop", "drops", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Drop folder to watch (repeatable; default NEWSFLOW_DROP_DIRS).")
@click.option("--workers", type=int, default=None, help="Worker processes (default NEWSFLOW_WORKER__CONCURRENCY).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the api listens on.")
@click.option("--port", type=int, default=API_PORT, show_default=True, help="Port of the api.")
def up(drops: tuple[Path, ...], workers: int | None, host: str, port: int) -> None:
    """Run the whole system on this machine until Ctrl-C (embedded servers if no URLs are set)."""
    with command(drop_dirs=drops) as cmd:
        extra = {"NEWSFLOW_DROP_DIRS": json.dumps([str(d.absolute()) for d in cmd.settings.drop_dirs])}
        stop = stop_on_signals()
        with Supervisor(child_env(*cmd.settings.require_urls(), extra)) as supervisor:
            start_local_services(supervisor, workers or cmd.settings.worker.concurrency, watcher=True)
            supervisor.start("api", "api", "--host", host, "--port", str(port))
            click.echo(f"newsflow is up, watching {', '.join(map(str, cmd.settings.drop_dirs))}; "
                       f"api at http://{host}:{port} (/docs); Ctrl-C stops it", err=True)
            if cmd.servers.postgres or cmd.servers.redis:  # a first try needs no setup
                with transaction(cmd.runtime.sessions) as session:
                    key = create_key(session, f"up-{datetime.now():%Y%m%d-%H%M%S}", Role.OPERATOR)
                click.echo(f"operator key for this try (Authorization: Bearer ...): {key}", err=True)
            supervise(supervisor, stop)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--wait/--no-wait", default=False, help="Wait until every drop reached a terminal state.")
@click.option("--workers", type=int, default=None,
              help="Local worker processes to run meanwhile (default: the setting with embedded servers, "
                   "0 when URLs point at a running system).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Show the services' logs (NEWSFLOW_LOG_LEVEL), not only warnings.")
def ingest(paths: tuple[Path, ...], wait: bool, workers: int | None, as_json: bool, verbose: bool) -> None:
    """Enqueue every file under PATH... that the watcher would take, and report what became of each."""
    with command(log_level=None if verbose else "WARNING") as cmd:
        runtime = cmd.runtime
        workers = cmd.local_processes(workers, cmd.settings.worker.concurrency)
        level = cmd.settings.log_level if verbose else "WARNING"
        with local_services(cmd, workers, log_level=level, quiet=not verbose) as supervisor:
            report = IngestReport()
            enqueue_paths(runtime, paths, report)
            if wait:
                waiter = Waiter(runtime, progress=sys.stderr.isatty() and not as_json,
                                dead_services=supervisor.dead)
                try:
                    wait_until_terminal(waiter, report)
                    if workers:  # our own enricher runs: wait for it too
                        wait_until_enriched(waiter, report)
                except SystemFailure as e:
                    raise click.ClickException(str(e)) from e
                collect_problems(runtime, report.drop_ids, report)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    elif wait:
        click.echo(format_report(report))
    else:
        click.echo(f"enqueued {report.new} new drops of {report.files} files")


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest version (Alembic)."""
    with command():
        click.echo("database schema is up to date")


@cli.command("export")
@click.argument("kind", type=click.Choice(["articles", "drops"]))
@click.option("--jsonl", is_flag=True, required=True, help="One JSON object per line (the only format).")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File to write (default stdout).")
def export(kind: str, jsonl: bool, output) -> None:
    """Write the consumer records (SPEC section 6), one JSON object a line."""
    with command(log_level="WARNING") as cmd, cmd.runtime.sessions() as session:
        records = iter_articles(session) if kind == "articles" else iter_drops(session)
        for record in records:
            output.write(record.model_dump_json() + "\n")


@cli.command()
@click.option("--backfill", is_flag=True, required=True,
              help="Re-enrich every article whose enrichment version differs from this one.")
@click.option("--workers", type=int, default=None,
              help="Local enricher processes to run meanwhile (default: the setting with embedded servers, "
                   "0 when URLs point at a running system).")
@click.option("--window", type=int, default=200, show_default=True, help="Articles in flight at most.")
def enrich(backfill: bool, workers: int | None, window: int) -> None:
    """Re-enrich articles in batches, with progress; safe to interrupt and run again."""
    with command(log_level="WARNING") as cmd:
        workers = cmd.local_processes(workers, cmd.settings.enricher.concurrency)
        env = child_env(*cmd.settings.require_urls(), {"NEWSFLOW_LOG_LEVEL": "WARNING", "NEWSFLOW_METRICS__PORT": "0"})
        with Supervisor(env, quiet=True) as supervisor:
            if workers:
                supervisor.start("storage", "storage")
                supervisor.start("enricher", "enricher", "--concurrency", str(workers))
                wait_for_nodes(cmd.runtime.celery, 2, alive=lambda: not supervisor.dead())
            total = run_backfill(cmd.runtime, window=window, progress=sys.stderr.isatty(),
                                 dead_services=supervisor.dead)
    click.echo(f"{total} articles re-enriched to enrichment version {ENRICHMENT_VERSION}")


@cli.group()
def clusters() -> None:
    """Near-duplicate clusters (SPEC section 4)."""


@clusters.command("rebuild")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Jaccard threshold to rebuild with (default NEWSFLOW_DEDUP__THRESHOLD). Set the same value "
                   "in the storage service's environment, or new articles keep the old one.")
def rebuild_clusters(threshold: float | None) -> None:
    """Recompute every near-duplicate link and cluster, e.g. after changing the threshold."""
    with command() as cmd:
        threshold = cmd.settings.dedup.threshold if threshold is None else threshold
        with transaction(cmd.runtime.sessions) as session:
            count = rebuild(session, threshold)
            sizes = cluster_sizes(session)
    click.echo(f"rebuilt clusters of {count} articles at threshold {threshold}: "
               f"{sizes['clusters']} clusters, {sizes['multi']} with more than one article")


def _service_command(name: str) -> click.Command:
    @click.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   add_help_option=False, help=f"Run the {name} service alone (what a container runs).")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args: tuple[str, ...]) -> None:
        exec_service(name, args)
    return run


cli.add_command(audit)
cli.add_command(status)
cli.add_command(trace)
cli.add_command(replay)
cli.add_command(prune)
cli.add_command(keys)
for _name in ("watcher", "worker", "enricher", "storage", "api"):
    cli.add_command(_service_command(_name))


def main() -> None:
    cli(prog_name="newsflow")


if __name__ == "__main__":
    main()
