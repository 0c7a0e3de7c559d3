"""Walks of the drop folders: the whole of them at start and every rescan interval (the safety net for
missed events), and a folder created or moved in. Resumable: the watcher takes a slice of entries at a
time, and takes none while enough files wait to be taken, so a walk of a folder of any size holds one
directory listing's worth of memory (os.scandir reads it as it goes)."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator

from shared.intake import scan_tree

log = logging.getLogger(__name__)
Entry = tuple[str, os.stat_result]


class Walks:
    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self.queue: deque[tuple[bool, Iterator[Entry]]] = deque()  # (the whole folders?, entries to come)
        self.rounds = 0
        self.entries = self.new = 0
        self.started = self.cpu_started = 0.0

    def __bool__(self) -> bool:
        return bool(self.queue)

    def start_whole(self) -> None:
        """Walk every drop folder again, unless the last such walk is still under way."""
        if any(whole for whole, _ in self.queue):
            return
        self.queue.extend((True, scan_tree(root)) for root in self.roots)
        self.entries = self.new = 0
        self.started, self.cpu_started = time.monotonic(), time.process_time()

    def add_folder(self, root: str, folder: str) -> None:
        self.queue.append((False, scan_tree(root, folder)))

    def take(self, limit: int) -> Iterator[Entry]:
        """Up to `limit` entries, the walks in order; stop iterating at any point and the rest waits."""
        while self.queue and limit > 0:
            whole, entries = self.queue[0]
            for entry in entries:
                self.entries += whole
                limit -= 1
                yield entry
                if limit <= 0:
                    return
            self.queue.popleft()
            if whole and not any(w for w, _ in self.queue):
                self.finished()

    def finished(self) -> None:
        self.rounds += 1
        level = logging.INFO if self.rounds == 1 or self.new else logging.DEBUG
        log.log(level, "walked the drop folders", extra={
            "files": self.entries, "new": self.new, "seconds": round(time.monotonic() - self.started, 2),
            "cpu_s": round(time.process_time() - self.cpu_started, 2)})
