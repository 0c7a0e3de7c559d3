"""The watcher loop: watchdog events and a walk of the drop folders (at start and every rescan interval) find
files; complete ones are read, recorded in the ledger and enqueued (shared.intake.take_files, a transaction of
up to TAKE_FILES at a time), while the pipeline owes fewer than `max_unfinished` drops in all its stages
together, counted in the ledger (back-pressure); at every rescan the reconciler re-sends what a worker did not
finish or was lost.

Memory does not grow with a backlog: the walk is resumable and advances only while fewer than READY_CAP
files wait to be taken (the rest wait on disk), a take holds at most TAKE_BYTES of file contents, and what
was taken is kept as 8-byte fingerprints (known.py). The loop sleeps until the next event or deadline, so a
file renamed in is taken as soon as its batch is full or has waited batch_wait_s.
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
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from services.watcher.known import KnownFiles, fingerprint
from services.watcher.sender import Sender
from services.watcher.settle import SettleTracker
from services.watcher.walk import Walks
from shared.db import transaction
from shared.enrichment import reconcile_enrichment
from shared.errors import TransientError, transient_boundary
from shared.intake import TAKE_FILES, candidate_stat, is_ignored_name, take_files
from shared.ledger import reconcile, unfinished_drops
from shared.models import Drop
from shared.retention import prune
from shared.runtime import Runtime
from shared.status import SOURCES_REFRESH_S, refresh_sources

log = logging.getLogger(__name__)
UNREACHABLE_PAUSE_S = 1.0
READY_CAP = 2000  # files waiting to be taken beyond which the walk waits
EVENT_CAP = 10_000  # ...and beyond which events are dropped: the next walk finds those files on disk
PRUNE_INTERVAL_S = 86_400.0
WALK_SLICE = 1000  # entries walked per turn of the loop, so events are served during a long walk
# Events worth a look: created, written, closed after writing, attributes (touch), moved; not the opens
# and closes of reading (the watcher's own reads would wake it).
EVENTS = [FileCreatedEvent, DirCreatedEvent, FileMovedEvent, DirMovedEvent, FileModifiedEvent, FileClosedEvent]


class EventQueue(FileSystemEventHandler):
    """Hands watchdog's events (from its thread) to the watcher loop as (kind, path) pairs, and wakes it."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.wake = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirCreatedEvent | DirMovedEvent):
            item = ("dir", os.fsdecode(getattr(event, "dest_path", "") or event.src_path))
        elif event.event_type == "moved":
            if not event.dest_path:
                return  # moved out of the folders
            item = ("renamed", os.fsdecode(event.dest_path))
        elif event.event_type in ("created", "modified", "closed"):
            item = ("seen", os.fsdecode(event.src_path))
        else:
            return
        if not is_ignored_name(os.path.basename(item[1])):
            self.events.put(item)
            self.wake.set()


def make_observer() -> BaseObserver:
    """inotify reports a file moved in from elsewhere as a move (complete), not as a creation (to settle)."""
    if Observer.__name__ == "InotifyObserver":  # type: ignore[attr-defined]
        return Observer(generate_full_events=True)  # type: ignore[call-arg]
    return Observer()


class Watcher:
    def __init__(self, runtime: Runtime, drop_dirs: list[Path]) -> None:
        self.runtime = runtime
        self.roots = [str(d.absolute()) for d in drop_dirs]
        self.settings = runtime.settings
        self.tracker = SettleTracker(self.settings.watcher.settle_s)
        self.handler = EventQueue()
        self.known = KnownFiles()
        self.ready: dict[str, float] = {}  # complete paths to take, in arrival order: when each became ready
        self.walks = Walks(self.roots)
        self.sender = Sender(runtime.celery, batch_size=self.settings.pipeline.batch_size)
        self.host = socket.gethostname()
        self.paused = self.pause_logged = False
        self.next_rescan = self.next_settle = self.next_prune = self.next_sources = 0.0

    def load_known(self) -> None:
        """What the ledger already holds, so a restart neither re-reads nor re-ingests it."""
        query = (select(Drop.path, Drop.raw_path, Drop.size, Drop.mtime_ns).distinct(Drop.path)
                 .order_by(Drop.path, Drop.id.desc()).execution_options(yield_per=2000))
        with self.runtime.sessions() as session:
            self.known.update(fingerprint(os.fsdecode(row.raw_path) if row.raw_path else row.path, row.size,
                                          row.mtime_ns) for row in session.execute(query))
        log.info("ledger loaded", extra={"known_paths": len(self.known)})

    def root_of(self, path: str) -> str | None:
        return next((r for r in self.roots if path.startswith(r.rstrip(os.sep) + os.sep)), None)

    def admit(self, path: str, now: float) -> None:
        if len(self.ready) < EVENT_CAP:
            self.ready.setdefault(path, now)

    def consider(self, path: str, now: float, *, renamed: bool = False) -> None:
        """A path an event named: complete if renamed in, else to settle (again, if it was ready)."""
        root = self.root_of(path)
        stat = candidate_stat(path, root) if root else None
        if stat is None:
            self.tracker.forget(path)
            return
        if fingerprint(path, stat.st_size, stat.st_mtime_ns) in self.known:
            return
        if renamed:
            self.tracker.mark_renamed_in(path)
            return
        age_s = time.time() - stat.st_mtime_ns / 1e9
        if path in self.ready and age_s >= self.tracker.settle_s:
            return  # a late event about a file still unchanged: it stays ready
        self.ready.pop(path, None)  # written again since it was found complete: settle again
        self.tracker.observe(path, stat.st_size, stat.st_mtime_ns, now, age_s=age_s)

    def found(self, path: str, stat: os.stat_result, now: float, wall: float) -> bool:
        """A file the walk met: ready if unchanged for the settle interval, else to settle; False if known."""
        if path in self.ready or fingerprint(path, stat.st_size, stat.st_mtime_ns) in self.known:
            return False
        age_s = wall - stat.st_mtime_ns / 1e9
        if age_s >= self.tracker.settle_s and path not in self.tracker.pending:
            self.ready[path] = now
        else:
            self.tracker.observe(path, stat.st_size, stat.st_mtime_ns, now, age_s=age_s)
        return True

    def walk(self, now: float) -> None:
        """Advance the walks by up to WALK_SLICE entries, while fewer than READY_CAP files wait."""
        wall = time.time()
        if len(self.ready) < READY_CAP:
            for path, stat in self.walks.take(WALK_SLICE):
                self.walks.new += self.found(path, stat, now, wall)
                if len(self.ready) >= READY_CAP:
                    break

    def drain_events(self, now: float) -> None:
        while True:
            try:
                kind, path = self.handler.events.get_nowait()
            except queue.Empty:
                return
            if kind != "dir":
                self.consider(path, now, renamed=kind == "renamed")
            elif root := self.root_of(path):
                self.walks.add_folder(root, path)  # a folder created or moved in

    def check_pending(self, now: float) -> None:
        """Files renamed in, and (every poll interval) files being written that are due, are complete now."""
        if now < self.next_settle:
            done = self.tracker.ready_renamed()
        else:
            self.next_settle = now + self.settings.watcher.poll_interval_s
            for path in self.tracker.due(now):  # look again: a change since restarts its clock
                root = self.root_of(path)
                stat = candidate_stat(path, root) if root else None
                if stat is None:
                    self.tracker.forget(path)
                else:
                    self.tracker.observe(path, stat.st_size, stat.st_mtime_ns, now)
            done = self.tracker.ready(now)
        for path in done:
            self.admit(path, now)

    def room(self) -> int:
        """Files that may be taken now: up to `max_unfinished` drops owed by the pipeline, in every stage,
        from the ledger (what waits in a queue or a worker's hands, whichever stage is slowest). Pausing
        is logged when it starts; resuming once half the limit is free again, not at every batch stored."""
        limit = self.settings.pipeline.max_unfinished
        unfinished = self.unfinished()
        self.paused = unfinished >= limit
        if self.paused != self.pause_logged and (self.paused or unfinished <= limit // 2):
            self.pause_logged = self.paused
            log.warning("%s taking files: the pipeline owes %d drops (limit %d)",
                        "paused" if self.paused else "resumed", unfinished, limit)
        return 0 if self.paused else limit - unfinished

    def unfinished(self) -> int:
        with self.runtime.sessions() as session:
            return unfinished_drops(session)

    def flush(self, now: float, *, force: bool = False) -> None:
        """Take ready files, a transaction at a time, while the parse queue has room; a partial batch waits
        until it has waited batch_wait_s (not when `force`)."""
        pipeline = self.settings.pipeline
        while self.ready:
            waited_s = now - next(iter(self.ready.values()))
            if not force and len(self.ready) < pipeline.batch_size and waited_s < pipeline.batch_wait_s:
                return
            room = self.room()
            if not room:
                return
            paths = list(itertools.islice(self.ready, min(room, TAKE_FILES)))  # take() reads fewer past TAKE_BYTES
            for path in paths[:self.take(paths)]:
                del self.ready[path]

    def take(self, paths: list[str]) -> int:
        """Read, record and enqueue the first of these files (shared.intake.take_files); returns how many.

        Whatever a file is, it ends in the ledger: one that cannot be read (permissions, an I/O error) as
        `rejected` (`unreadable`, replayable), one that vanished as `vanished`, a name that is not UTF-8
        escaped (with its bytes kept): no file stops the watcher.
        """
        taken = take_files(self.runtime.sessions, paths, host=self.host, max_bytes=self.settings.pipeline.max_bytes,
                           send=self.sender.send)
        for read in taken.reads:
            if not read.vanished:
                self.known.add(fingerprint(read.path, read.size, read.mtime_ns))
        log.info("files taken", extra={"files": len(taken.reads), "enqueued": len(taken.sent),
                                       "known": sum(not r.is_new for r in taken.registered)})
        return taken.consumed

    def run(self, stop: threading.Event) -> None:
        self.load_known()
        observer = make_observer()
        for root in self.roots:
            Path(root).mkdir(parents=True, exist_ok=True)
            observer.schedule(self.handler, root, recursive=True, event_filter=EVENTS)
        observer.start()
        log.info("watching", extra={"drop_dirs": self.roots})
        try:
            while not stop.is_set():
                try:
                    wait_s = self.step(time.monotonic())
                except TransientError as e:  # the database or broker is away: keep the files, try again
                    log.warning("waiting for the database or broker: %s", e)
                    wait_s = UNREACHABLE_PAUSE_S
                if wait_s > 0:
                    self.handler.wake.wait(min(wait_s, UNREACHABLE_PAUSE_S))
                self.handler.wake.clear()
            with transient_boundary():
                self.flush(time.monotonic(), force=True)
        finally:
            observer.stop()
            observer.join()

    def step(self, now: float) -> float:
        """One turn of the loop; returns how long to wait for an event before the next turn."""
        with transient_boundary():
            rescan = now >= self.next_rescan
            if rescan:
                self.walks.start_whole()
            self.drain_events(now)
            self.check_pending(now)
            self.walk(now)
            self.flush(now)
            if rescan:
                reconcile(self.runtime)
                reconcile_enrichment(self.runtime)
                self.prune_daily(now)
                self.refresh_sources(now)
                self.next_rescan = now + self.settings.watcher.rescan_interval_s
        return self.wait_s(now)

    def refresh_sources(self, now: float) -> None:
        """The per-source figures of `newsflow status` (a window over the week's articles), every few minutes."""
        if now >= self.next_sources:
            with transaction(self.runtime.sessions) as session:
                refresh_sources(session)
            self.next_sources = now + SOURCES_REFRESH_S

    def prune_daily(self, now: float) -> None:
        """Retention (NEWSFLOW_RETENTION__PRUNE_DAYS): the kept bytes of long-finished drops, once a day."""
        days = self.settings.retention.prune_days
        if days is not None and now >= self.next_prune:
            prune(self.runtime.sessions, older_than_days=days)
            self.next_prune = now + PRUNE_INTERVAL_S

    def wait_s(self, now: float) -> float:
        if not self.paused and (len(self.ready) >= self.settings.pipeline.batch_size
                                or (self.walks and len(self.ready) < READY_CAP)):
            return 0.0
        if self.paused:
            return self.settings.watcher.poll_interval_s
        deadlines = [self.next_rescan]
        if self.ready:
            deadlines.append(next(iter(self.ready.values())) + self.settings.pipeline.batch_wait_s)
        if self.tracker.pending:
            deadlines.append(self.next_settle)
        return max(0.0, min(deadlines) - now)
