"""Taking files in: which files count, how they are read, and how they enter the ledger.

Used by the watcher service and by `newsflow ingest`, so both take exactly the same files.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Blob, Drop
from shared.records import DropStatus, RejectReason

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".tmp", ".part")
HASH_CHUNK_BYTES = 1024 * 1024


def is_ignored_name(name: str) -> bool:
    """Dotfiles and files still being written under a temporary name."""
    return name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES)


def is_candidate(path: Path, root: Path) -> bool:
    """A regular file inside root, not ignored, and not a symlink that leads out of root."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    if any(is_ignored_name(part) for part in rel.parts):
        return False
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
            log.warning("symlink leads out of its drop folder, not followed", extra={"path": str(path)})
            return False
        return path.is_file()
    except OSError:
        return False


def iter_candidates(root: Path) -> Iterator[Path]:
    """Every file under root (or root itself, if a file) that the watcher would take, in sorted order."""
    root = root.absolute()
    if root.is_file() or root.is_symlink():
        if not is_ignored_name(root.name) and root.is_file():
            yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored_name(d))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if is_candidate(path, root):
                yield path


@dataclass(frozen=True)
class FileRead:
    """What intake learned about one file: its bytes (when small enough) or why there are none."""

    path: str
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    data: bytes | None = None
    reason: RejectReason | None = None
    vanished: bool = False


def read_file(path: Path, max_bytes: int) -> FileRead:
    """Read and hash one file; an oversized file is hashed in chunks and never held in memory."""
    try:
        with path.open("rb") as handle:
            stat = os.fstat(handle.fileno())
            if stat.st_size > max_bytes:
                digest = hashlib.sha256()
                while chunk := handle.read(HASH_CHUNK_BYTES):
                    digest.update(chunk)
                return FileRead(str(path), digest.hexdigest(), stat.st_size, stat.st_mtime_ns,
                                reason=RejectReason.TOO_LARGE)
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        return FileRead(str(path), None, None, None, vanished=True)
    return FileRead(str(path), hashlib.sha256(data).hexdigest(), len(data), stat.st_mtime_ns, data=data)


@dataclass(frozen=True)
class Registered:
    drop_id: int
    path: str
    is_new: bool
    status: DropStatus


def _drop_row(read: FileRead, host: str, lease_s: float, max_bytes: int) -> dict[str, object]:
    # A multi-row INSERT needs the same keys in every row.
    row: dict[str, object] = {
        "path": read.path, "sha256": read.sha256, "size": read.size, "mtime_ns": read.mtime_ns, "host": host,
        "reason": None, "detail": None, "finished_at": None, "lease_expires_at": None,
    }
    if read.vanished:
        return row | {"status": DropStatus.VANISHED, "reason": "vanished", "finished_at": func.now(),
                      "detail": "the file disappeared between discovery and reading"}
    if read.reason is RejectReason.TOO_LARGE:
        return row | {"status": DropStatus.REJECTED, "reason": read.reason.value, "finished_at": func.now(),
                      "detail": f"file is {read.size:,} bytes, over the {max_bytes:,}-byte limit; not read"}
    return row | {"status": DropStatus.QUEUED, "lease_expires_at": func.now() + _seconds(lease_s)}


def _seconds(seconds: float):
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def register_reads(session: Session, reads: Iterable[FileRead], *, host: str, lease_s: float,
                   max_bytes: int) -> list[Registered]:
    """Record files in the ledger: one drop per (path, content); a file seen before is not new."""
    reads = list(reads)
    if not reads:
        return []
    blobs = {r.sha256: r for r in reads if r.data is not None and r.sha256}
    if blobs:
        session.execute(insert(Blob).values(
            [{"sha256": sha, "size": len(r.data or b""), "data": r.data} for sha, r in sorted(blobs.items())]
        ).on_conflict_do_nothing(index_elements=[Blob.sha256]))
    rows = [_drop_row(r, host, lease_s, max_bytes) for r in reads]
    inserted = session.execute(
        insert(Drop).values(rows).on_conflict_do_nothing(constraint="uq_drops_path_sha256")
        .returning(Drop.id, Drop.path, Drop.sha256, Drop.status)
    ).all()
    new_keys = {(row.path, row.sha256) for row in inserted}
    result = [Registered(row.id, row.path, True, row.status) for row in inserted]
    known = [(r.path, r.sha256) for r in reads if r.sha256 and (r.path, r.sha256) not in new_keys]
    if known:
        existing = session.execute(
            select(Drop.id, Drop.path, Drop.status).where(tuple_(Drop.path, Drop.sha256).in_(known))
        ).all()
        result += [Registered(row.id, row.path, False, row.status) for row in existing]
    return result
