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

from sqlalchemy import select

from shared.db import transaction
from shared.intake import iter_candidates, read_file, register_reads
from shared.ledger import chunked, dispatch, reconcile, status_counts
from shared.models import Drop
from shared.records import TERMINAL_STATUSES, DropStatus
from shared.runtime import Runtime

log = logging.getLogger(__name__)

REGISTER_CHUNK = 500  # files read and recorded per transaction
POLL_INTERVAL_S = 0.1
STALL_WARNING_S = 30.0


@dataclass
class IngestReport:
    files: int = 0
    new: int = 0
    drop_ids: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # path, status, reason, detail
    first_enqueue: float | None = None
    last_terminal: float | None = None

    @property
    def elapsed_s(self) -> float:
        if self.first_enqueue is None or self.last_terminal is None:
            return 0.0
        return self.last_terminal - self.first_enqueue

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files, "new_drops": self.new, "already_known": self.files - self.new,
            "counts": dict(self.counts), "elapsed_s": round(self.elapsed_s, 3),
            "files_per_s": round(self.files / self.elapsed_s, 2) if self.elapsed_s else None,
            "problems": [dict(zip(("path", "status", "reason", "detail"), p, strict=True)) for p in self.problems],
        }


def enqueue_paths(runtime: Runtime, paths: Iterable[Path], report: IngestReport) -> None:
    settings = runtime.settings.pipeline
    host = socket.gethostname()
    files = [f for p in paths for f in iter_candidates(p)]
    report.files = len(files)
    for chunk in chunked(files, REGISTER_CHUNK):
        reads = [read_file(path, settings.max_bytes) for path in chunk]
        with transaction(runtime.sessions) as session:
            registered = register_reads(session, reads, host=host, lease_s=settings.lease_s,
                                        max_bytes=settings.max_bytes)
        report.new += sum(r.is_new for r in registered)
        report.drop_ids += [r.drop_id for r in registered]
        to_send = [r.drop_id for r in registered if r.is_new and r.status is DropStatus.QUEUED]
        if to_send and report.first_enqueue is None:
            report.first_enqueue = time.monotonic()
        dispatch(runtime.celery, to_send, batch_size=settings.batch_size)


class SystemFailure(RuntimeError):
    """The system itself failed (not a file): ingest exits non-zero."""


def wait_until_terminal(runtime: Runtime, report: IngestReport, *, progress: bool,
                        dead_services: Callable[[], list[str]] = list) -> None:
    terminal = {s.value for s in TERMINAL_STATUSES}
    total, last_done, last_change = len(report.drop_ids), -1, time.monotonic()
    next_reconcile = time.monotonic() + runtime.settings.watcher.rescan_interval_s
    while True:
        with runtime.sessions() as session:
            counts = status_counts(session, report.drop_ids)
        done = sum(n for status, n in counts.items() if status in terminal)
        now = time.monotonic()
        if done != last_done:
            last_done, last_change = done, now
            if progress:
                print(f"\r  {done}/{total} drops finished", end="", file=sys.stderr, flush=True)
        if done >= total:
            break
        if dead := dead_services():
            raise SystemFailure(f"local service stopped unexpectedly: {', '.join(dead)}")
        if now - last_change > STALL_WARNING_S:
            log.warning("no drop finished for %.0f s: is a worker and a storage service running?", STALL_WARNING_S)
            last_change = now
        if now >= next_reconcile:
            reconcile(runtime)
            next_reconcile = now + runtime.settings.watcher.rescan_interval_s
        time.sleep(POLL_INTERVAL_S)
    report.last_terminal = time.monotonic()
    if progress:
        print(file=sys.stderr)
    report.counts = Counter({s.value: n for s, n in counts.items()})


def collect_problems(runtime: Runtime, drop_ids: Sequence[int], report: IngestReport) -> None:
    with runtime.sessions() as session:
        rows = session.execute(
            select(Drop.path, Drop.status, Drop.reason, Drop.detail)
            .where(Drop.id.in_(drop_ids), Drop.status.in_([DropStatus.REJECTED, DropStatus.FAILED,
                                                            DropStatus.VANISHED]))
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
    if report.elapsed_s:
        lines.append(f"  {report.elapsed_s:.2f} s from first enqueue to last terminal state "
                     f"({report.files / report.elapsed_s:.1f} files/s)")
    if report.problems:
        lines.append("not stored:")
        lines += [f"  {status:<9} {reason:<16} {path}: {detail}" for path, status, reason, detail in report.problems]
    return "\n".join(lines)
