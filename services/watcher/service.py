"""The watcher loop: watchdog events plus periodic rescans feed the settle tracker; ready files are
read, recorded in the ledger and enqueued in batches; expired leases are re-enqueued.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path

from sqlalchemy import select
from watchdog.events import DirCreatedEvent, DirMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from services.watcher.settle import SettleTracker
from shared.db import transaction
from shared.enrichment import reconcile_enrichment
from shared.errors import TransientError, transient_boundary
from shared.intake import is_candidate, iter_candidates, read_file, register_reads
from shared.ledger import dispatch, parse_backlog, reconcile
from shared.models import Drop
from shared.records import DropStatus
from shared.runtime import Runtime

log = logging.getLogger(__name__)
UNREACHABLE_PAUSE_S = 1.0


class EventQueue(FileSystemEventHandler):
    """Hands watchdog's events (from its thread) to the watcher loop as (kind, path) pairs."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirCreatedEvent | DirMovedEvent):
            self.events.put(("dir", os.fsdecode(getattr(event, "dest_path", "") or event.src_path)))
        elif event.event_type == "moved":
            self.events.put(("renamed", os.fsdecode(event.dest_path)))
        elif event.event_type in ("created", "modified", "closed"):
            self.events.put(("seen", os.fsdecode(event.src_path)))


class Watcher:
    def __init__(self, runtime: Runtime, drop_dirs: list[Path]) -> None:
        self.runtime = runtime
        self.roots = [d.absolute() for d in drop_dirs]
        self.settings = runtime.settings
        self.tracker = SettleTracker(self.settings.watcher.settle_s)
        self.handler = EventQueue()
        self.known: dict[str, tuple[int | None, int | None]] = {}
        self.batch: dict[str, None] = {}  # ready paths in arrival order
        self.batch_started = 0.0
        self.host = socket.gethostname()
        self.paused = False

    def load_known(self) -> None:
        """What the ledger already holds, so a restart neither re-reads nor re-ingests it."""
        with self.runtime.sessions() as session:
            rows = session.execute(
                select(Drop.path, Drop.size, Drop.mtime_ns).distinct(Drop.path).order_by(Drop.path, Drop.id.desc())
            ).all()
        self.known = {row.path: (row.size, row.mtime_ns) for row in rows}
        log.info("ledger loaded", extra={"known_paths": len(self.known)})

    def root_of(self, path: Path) -> Path | None:
        return next((r for r in self.roots if path.is_relative_to(r)), None)

    def consider(self, path: Path, now: float, *, renamed: bool = False) -> None:
        root = self.root_of(path)
        if root is None or not is_candidate(path, root):
            return
        try:
            stat = path.stat()
        except FileNotFoundError:
            self.tracker.forget(str(path))
            return
        if self.known.get(str(path)) == (stat.st_size, stat.st_mtime_ns) or str(path) in self.batch:
            return
        if renamed:
            self.tracker.mark_renamed_in(str(path))
        else:
            age_s = time.time() - stat.st_mtime_ns / 1e9
            self.tracker.observe(str(path), stat.st_size, stat.st_mtime_ns, now, age_s=age_s)

    def rescan(self, now: float, roots: list[Path] | None = None) -> None:
        for root in roots or self.roots:
            for path in iter_candidates(root):
                self.consider(path, now)

    def drain_events(self, now: float) -> None:
        while True:
            try:
                kind, raw = self.handler.events.get_nowait()
            except queue.Empty:
                return
            if kind == "dir":
                self.rescan(now, [Path(raw)])
            else:
                self.consider(Path(raw), now, renamed=kind == "renamed")

    def check_pending(self, now: float) -> None:
        for path in list(self.tracker.pending):
            self.consider(Path(path), now)
        ready = self.tracker.ready(now)
        if ready and not self.batch:
            self.batch_started = now
        self.batch.update(dict.fromkeys(ready))

    def backlogged(self) -> bool:
        """Back-pressure: True while the parse queue is deeper than the limit (files wait on disk)."""
        excess = parse_backlog(self.runtime)
        if bool(excess) != self.paused:
            self.paused = bool(excess)
            log.warning("%s taking files: the parse queue is %d messages over its limit of %d",
                        "paused" if excess else "resumed", excess, self.settings.watcher.max_queue_depth)
        return self.paused

    def flush(self, now: float, *, force: bool = False) -> None:
        """Take ready files a message's worth at a time, while the parse queue has room."""
        pipeline = self.settings.pipeline
        if not force and len(self.batch) < pipeline.batch_size and now - self.batch_started < pipeline.batch_wait_s:
            return
        while self.batch and (force or not self.backlogged()):
            paths = list(itertools.islice(self.batch, pipeline.batch_size))
            self.take(paths)
            for path in paths:
                del self.batch[path]
        self.batch_started = now

    def take(self, paths: list[str]) -> None:
        """Read, record and enqueue these files."""
        pipeline = self.settings.pipeline
        reads = [read_file(Path(p), pipeline.max_bytes) for p in paths]
        with transaction(self.runtime.sessions) as session:
            registered = register_reads(session, reads, host=self.host, lease_s=pipeline.lease_s,
                                        max_bytes=pipeline.max_bytes)
        for read in reads:
            self.known[read.path] = (read.size, read.mtime_ns)
        new = [r.drop_id for r in registered if r.is_new and r.status is DropStatus.QUEUED]
        dispatch(self.runtime.celery, new, batch_size=pipeline.batch_size)
        log.info("files taken", extra={"files": len(paths), "enqueued": len(new),
                                       "known": sum(not r.is_new for r in registered)})

    def run(self, stop: threading.Event) -> None:
        self.load_known()
        observer = Observer()
        for root in self.roots:
            root.mkdir(parents=True, exist_ok=True)
            observer.schedule(self.handler, str(root), recursive=True)
        observer.start()
        log.info("watching", extra={"drop_dirs": [str(r) for r in self.roots]})
        next_rescan = 0.0
        try:
            while not stop.is_set():
                try:
                    next_rescan = self.step(next_rescan)
                except TransientError as e:  # the database or broker is away: keep the files, try again
                    log.warning("waiting for the database or broker: %s", e)
                    stop.wait(UNREACHABLE_PAUSE_S)
                stop.wait(self.settings.watcher.poll_interval_s)
            with transient_boundary():
                self.flush(time.monotonic(), force=True)
        finally:
            observer.stop()
            observer.join()

    def step(self, next_rescan: float) -> float:
        """One turn of the loop; returns when the next rescan is due."""
        now = time.monotonic()
        with transient_boundary():
            if now >= next_rescan:
                self.rescan(now)
                reconcile(self.runtime)
                reconcile_enrichment(self.runtime)
                next_rescan = now + self.settings.watcher.rescan_interval_s
            self.drain_events(now)
            self.check_pending(now)
            self.flush(now)
        return next_rescan
