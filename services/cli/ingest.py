"""`newsflow ingest`: take every file the watcher would take, wait for each to end, and report."""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from shared.db import among
from shared.enrichment import count_unenriched, failed_enrichments, reconcile_enrichment
from shared.errors import SystemFailure, TransientError, transient_boundary
from shared.intake import TAKE_FILES, iter_candidates, take_files
from shared.ledger import dispatch, reconcile, unfinished_drops
from shared.models import Drop
from shared.records import DropStatus
from shared.runtime import Runtime

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.1
STALL_WARNING_S = 30.0
UNREACHABLE_PAUSE_S = 1.0


@dataclass
class IngestReport:
    files: int = 0
    new: int = 0
    drop_ids: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # path, status, reason, detail
    first_enqueue: float | None = None
    last_terminal: float | None = None
    enriched: int | None = None
    enrichment_failed: list[tuple[int, str]] = field(default_factory=list)  # article id, why

    @property
    def elapsed_s(self) -> float:
        if self.first_enqueue is None or self.last_terminal is None:
            return 0.0
        return self.last_terminal - self.first_enqueue

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files, "new_drops": self.new, "already_known": self.files - self.new,
            "counts": dict(self.counts), "enriched": self.enriched, "elapsed_s": round(self.elapsed_s, 3),
            "files_per_s": round(self.files / self.elapsed_s, 2) if self.elapsed_s else None,
            "problems": [dict(zip(("path", "status", "reason", "detail"), p, strict=True)) for p in self.problems],
            "enrichment_failed": [{"article_id": a, "error": e} for a, e in self.enrichment_failed],
        }


def owed(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return unfinished_drops(session)


def enqueue_paths(runtime: Runtime, paths: Iterable[Path], report: IngestReport) -> None:
    settings = runtime.settings.pipeline
    host = socket.gethostname()
    files = [f for p in paths for f in iter_candidates(p)]
    report.files = len(files)
    done = 0
    while done < len(files):
        while owed(runtime) >= settings.max_unfinished:  # back-pressure, as the watcher's
            time.sleep(POLL_INTERVAL_S)
        taken = take_files(runtime.sessions, files[done:done + TAKE_FILES], host=host, max_bytes=settings.max_bytes,
                           send=lambda ids: dispatch(runtime.celery, ids, batch_size=settings.batch_size))
        done += taken.consumed
        report.new += sum(r.is_new for r in taken.registered)
        report.drop_ids += [r.drop_id for r in taken.registered]
        if taken.sent and report.first_enqueue is None:
            report.first_enqueue = time.monotonic()


@dataclass
class Waiter:
    """Polls until work is done, re-sends what the broker lost, and notices stalls and dead services."""

    runtime: Runtime
    progress: bool
    dead_services: Callable[[], list[str]] = list

    @staticmethod
    def _poll(call: Callable[[], Any]) -> Any:
        """Call it; while the database or broker is unreachable, say so and return -1 (keep waiting)."""
        try:
            with transient_boundary():
                return call()
        except TransientError as e:
            log.warning("waiting for the database or broker: %s", e)
            time.sleep(UNREACHABLE_PAUSE_S)
            return -1

    def until(self, label: str, total: int, remaining: Callable[[], int], reconcile_now: Callable[[], object]
              ) -> None:
        last_left, last_change = -1, time.monotonic()
        next_reconcile = last_change + self.runtime.settings.watcher.rescan_interval_s
        while (left := self._poll(remaining)) != 0:
            now = time.monotonic()
            if left >= 0 and left != last_left:
                last_left, last_change = left, now
                if self.progress:
                    print(f"\r  {total - left}/{total} {label}", end="", file=sys.stderr, flush=True)
            if dead := self.dead_services():
                raise SystemFailure(f"local service stopped unexpectedly: {', '.join(dead)}")
            if now - last_change > STALL_WARNING_S:
                log.warning("nothing %s for %.0f s: are the services running?", label, STALL_WARNING_S)
                last_change = now
            if now >= next_reconcile and left > 0:
                self._poll(reconcile_now)
                next_reconcile = now + self.runtime.settings.watcher.rescan_interval_s
            time.sleep(POLL_INTERVAL_S)
        if self.progress:
            print(f"\r  {total}/{total} {label}", file=sys.stderr)


def wait_until_terminal(waiter: Waiter, report: IngestReport) -> None:
    """Poll the drops still queued only: a drop that ended stays ended, so each poll costs what is left."""
    runtime = waiter.runtime
    pending, ended = list(report.drop_ids), Counter[str]()

    def remaining() -> int:
        nonlocal pending
        with runtime.sessions() as session:
            now_ended = dict(session.execute(select(Drop.id, Drop.status).where(
                among(Drop.id, pending), Drop.status != DropStatus.QUEUED)).tuples().all())
        ended.update(status.value for status in now_ended.values())
        pending = [i for i in pending if i not in now_ended]
        report.counts = ended + Counter({DropStatus.QUEUED.value: len(pending)})
        return len(pending)

    waiter.until("drops finished", len(report.drop_ids), remaining, lambda: reconcile(runtime))
    report.last_terminal = time.monotonic()


def wait_until_enriched(waiter: Waiter, report: IngestReport) -> None:
    runtime = waiter.runtime
    with runtime.sessions() as session:
        article_ids = [i for i in session.execute(
            select(Drop.article_id).where(among(Drop.id, report.drop_ids), Drop.status == DropStatus.STORED)
        ).scalars() if i is not None]

    def remaining() -> int:
        with runtime.sessions() as session:
            return count_unenriched(session, article_ids)

    waiter.until("articles enriched", len(article_ids), remaining, lambda: reconcile_enrichment(runtime))
    with runtime.sessions() as session:
        report.enrichment_failed = failed_enrichments(session, article_ids)
    report.enriched = len(article_ids) - len(report.enrichment_failed)


def collect_problems(runtime: Runtime, drop_ids: Sequence[int], report: IngestReport) -> None:
    with runtime.sessions() as session:
        rows = session.execute(
            select(Drop.path, Drop.status, Drop.reason, Drop.detail)
            .where(among(Drop.id, drop_ids),
                   Drop.status.in_([DropStatus.REJECTED, DropStatus.FAILED, DropStatus.VANISHED]))
            .order_by(Drop.path)
        ).all()
    report.problems = [(r.path, r.status.value, r.reason or "", r.detail or "") for r in rows]


def format_report(report: IngestReport) -> str:
    c = report.counts
    lines = [
        f"newsflow ingest: {report.files} files seen, {report.new} new drops "
        f"({report.files - report.new} already known)",
        f"  stored     {c['stored']:>6}",
        f"  duplicate  {c['duplicate']:>6}",
        f"  rejected   {c['rejected']:>6}",
        f"  vanished   {c['vanished']:>6}",
        f"  failed     {c['failed']:>6}",
    ]
    if c["queued"]:
        lines.append(f"  unfinished {c['queued']:>6}")
    if report.enriched is not None:
        lines.append(f"  enriched   {report.enriched:>6}")
    if report.enrichment_failed:
        lines.append(f"  enrichment failed {len(report.enrichment_failed)} (stored and served; "
                     "`newsflow replay --enrichment` after a fix):")
        lines += [f"    article {article_id}: {error}" for article_id, error in report.enrichment_failed]
    if report.elapsed_s:
        lines.append(f"  {report.elapsed_s:.2f} s from first enqueue to last terminal state "
                     f"({report.files / report.elapsed_s:.1f} files/s)")
    if report.problems:
        lines.append("not stored:")
        lines += [f"  {status:<9} {reason:<16} {path}: {detail}" for path, status, reason, detail in report.problems]
    return "\n".join(lines)
