"""Deciding when a file is complete: renamed in, or unchanged in size and mtime for a settle interval."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pending:
    size: int
    mtime_ns: int
    stable_since: float


class SettleTracker:
    """Pure bookkeeping: callers feed observations with a clock reading and ask what is ready.

    Only files being written are tracked (files found complete, or renamed in, pass straight through),
    so the work per check is proportional to the files in flight, not to the folder.
    """

    def __init__(self, settle_s: float) -> None:
        self.settle_s = settle_s
        self.pending: dict[str, Pending] = {}
        self.renamed_in: set[str] = set()

    def observe(self, path: str, size: int, mtime_ns: int, now: float, *, age_s: float = 0.0) -> None:
        """Record a sighting; a change of size or mtime restarts the clock.

        `age_s` is how long ago the file was last modified: a file found by a rescan that has not
        changed for the settle interval is complete already.
        """
        seen = self.pending.get(path)
        if seen is None:
            self.pending[path] = Pending(size, mtime_ns, now - max(0.0, age_s))
        elif (seen.size, seen.mtime_ns) != (size, mtime_ns):
            self.pending[path] = Pending(size, mtime_ns, now)

    def mark_renamed_in(self, path: str) -> None:
        """A file moved into the folder was complete under its temporary name."""
        self.renamed_in.add(path)

    def forget(self, path: str) -> None:
        self.pending.pop(path, None)
        self.renamed_in.discard(path)

    def due(self, now: float) -> list[str]:
        """Pending paths unchanged for the settle interval as far as last seen: look at each again (observe,
        or forget it if gone) before asking what is ready, so a change since is caught."""
        return [p for p, s in self.pending.items() if now - s.stable_since >= self.settle_s]

    def ready(self, now: float) -> list[str]:
        """Paths complete now, removed from tracking."""
        return self._hand_out(self.renamed_in.union(self.due(now)))

    def ready_renamed(self) -> list[str]:
        """Only the paths renamed in (no look at the files being written): what can go between two checks."""
        return self._hand_out(self.renamed_in)

    def _hand_out(self, paths: set[str]) -> list[str]:
        done = sorted(paths)
        for path in done:
            self.forget(path)
        return done
