"""Operator commands that check or change state: `newsflow audit` and `newsflow replay`."""

from __future__ import annotations

import json
import sys

import click

from services.cli.ingest import IngestReport, Waiter, collect_problems, format_report, wait_until_terminal
from services.cli.system import command, local_services
from shared.audit import format_findings, run_audit
from shared.db import transaction
from shared.enrichment import (
    count_unenriched,
    dispatch_enrichment,
    failed_enrichments,
    reconcile_enrichment,
    requeue_failed_enrichment,
)
from shared.ledger import REPLAYABLE, dispatch, requeue_for_replay, select_replayable
from shared.records import DropStatus
from shared.retention import prune as run_prune
from shared.runtime import Runtime


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def audit(as_json: bool) -> None:
    """Check the delivery invariants; exit 1 when one fails."""
    with command(log_level="WARNING") as cmd, cmd.runtime.sessions() as session:
        findings = run_audit(session)
    if as_json:
        click.echo(json.dumps([{"check": f.check.name, "ok": f.ok, "count": f.count,
                                "sample": [list(map(str, row)) for row in f.sample]} for f in findings], indent=2))
    else:
        click.echo(format_findings(findings))
    if not all(f.ok for f in findings):
        sys.exit(1)


@click.command()
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in REPLAYABLE]),
              help="Only drops in this state (repeatable; default both).")
@click.option("--reason", help="Only drops with this reason code, e.g. not_text or retries_exhausted.")
@click.option("--id", "ids", multiple=True, type=int,
              help="Only this drop (repeatable); with --enrichment, this article.")
@click.option("--enrichment", is_flag=True, help="Failed enrichments instead of drops (all, or --id's articles).")
@click.option("--all", "everything", is_flag=True, help="Every rejected and failed drop.")
@click.option("--wait/--no-wait", default=True, help="Wait for the replayed drops and report (default).")
@click.option("--workers", type=int, default=None,
              help="Local worker processes to run meanwhile (default: the setting with embedded servers, "
                   "0 when URLs point at a running system).")
def replay(statuses: tuple[str, ...], reason: str | None, ids: tuple[int, ...], enrichment: bool, everything: bool,
           wait: bool, workers: int | None) -> None:
    """Run rejected or failed drops (or failed enrichments) through the pipeline again, after a fix."""
    if enrichment:
        if statuses or reason:
            raise click.UsageError("--enrichment takes --id (articles) or nothing (every failed enrichment)")
        return replay_enrichment(ids, wait, workers)
    if not (everything or reason or ids or statuses):
        raise click.UsageError("say which drops: --all, --status, --reason or --id")
    with command(log_level="WARNING") as cmd:
        runtime, pipeline = cmd.runtime, cmd.settings.pipeline
        with transaction(runtime.sessions) as session:
            drops = select_replayable(session, statuses=[DropStatus(s) for s in statuses] or REPLAYABLE,
                                      reason=reason, ids=ids)
            requeued, problems = requeue_for_replay(session, drops, max_bytes=pipeline.max_bytes)
        for drop_id, why in problems.items():
            click.echo(f"not replayed: drop {drop_id}: {why}", err=True)
        workers = cmd.local_processes(workers, cmd.settings.worker.concurrency)
        with local_services(cmd, workers if requeued else 0) as supervisor:
            dispatch(runtime.celery, requeued, batch_size=pipeline.batch_size)
            report = IngestReport(files=len(requeued), new=len(requeued), drop_ids=requeued)
            if wait and requeued:
                wait_until_terminal(Waiter(runtime, progress=sys.stderr.isatty(), dead_services=supervisor.dead),
                                    report)
                collect_problems(runtime, requeued, report)
    click.echo(f"replayed {len(requeued)} drops" + (f", {len(problems)} could not be" if problems else ""))
    if wait and requeued:
        click.echo(format_report(report))


def replay_enrichment(article_ids: tuple[int, ...], wait: bool, workers: int | None) -> None:
    with command(log_level="WARNING") as cmd:
        runtime = cmd.runtime
        with transaction(runtime.sessions) as session:
            ids = requeue_failed_enrichment(session, article_ids)
        workers = cmd.local_processes(workers, cmd.settings.enricher.concurrency)
        with local_services(cmd, workers if ids else 0) as supervisor:
            dispatch_enrichment(runtime.celery, ids, batch_size=cmd.settings.pipeline.batch_size)
            click.echo(f"replayed the enrichment of {len(ids)} articles")
            if wait and ids:
                waiter = Waiter(runtime, progress=sys.stderr.isatty(), dead_services=supervisor.dead)
                waiter.until("articles enriched", len(ids), lambda: pending(runtime, ids),
                             lambda: reconcile_enrichment(runtime))
                with runtime.sessions() as session:
                    failed = failed_enrichments(session, ids)
                click.echo(f"  enriched {len(ids) - len(failed)}, failed {len(failed)}")
                for article_id, error in failed:
                    click.echo(f"  article {article_id}: {error}")


def pending(runtime: Runtime, article_ids: list[int]) -> int:
    with runtime.sessions() as session:
        return count_unenriched(session, article_ids)


@click.command()
@click.option("--older-than", "days", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Days since the drops ended stored or duplicate.")
def prune(days: float) -> None:
    """Free the kept bytes of drops that ended stored or duplicate over DAYS ago (their articles keep the
    text); never those of drops queued, rejected or failed."""
    with command(log_level="WARNING") as cmd:
        pruned = run_prune(cmd.runtime.sessions, older_than_days=days)
    click.echo(f"pruned the kept bytes of {pruned.blobs} contents: {pruned.bytes:,} bytes freed")
