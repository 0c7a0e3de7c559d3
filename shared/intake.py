"""Taking files in: which files count, how they are read, and how they enter the ledger.

Used by the watcher service and by `newsflow ingest`, so both take exactly the same files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.records import DropReason, DropStatus

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".tmp", ".part")
TAKE_FILES = 500  # files read and recorded per transaction (each message still carries batch_size)...
TAKE_BYTES = 32 * 1024 * 1024  # ...or fewer, once their contents reach this (one file over it goes alone)
HASH_CHUNK_BYTES = 1024 * 1024
SKIPPED_MEMORY = 10_000  # paths whose skipping was logged, so a rescan does not log them again


def stored_path(path: str) -> str:
    """The path as the ledger keeps it: a name that is not valid UTF-8 (bytes os.fsdecode turned into lone
    surrogates) with those bytes escaped, `\\xe9`; the raw name is kept beside it (raw_path)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def raw_path(path: str) -> bytes | None:
    """The path's bytes, when they are not valid UTF-8 (else None: the text path says it all)."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return None


_skipped: dict[str, None] = {}


def note_skipped(path: str, why: str) -> None:
    """Say once per path why a file named in a drop folder is not taken (a rescan meets it again)."""
    if path in _skipped:
        return
    if len(_skipped) >= SKIPPED_MEMORY:
        _skipped.clear()
    _skipped[path] = None
    log.info("skipped: %s", why, extra={"path": stored_path(path)})


def _kind(mode: int) -> str:
    return {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device"}.get(stat.S_IFMT(mode), "not a regular file")


def is_ignored_name(name: str) -> bool:
    """Dotfiles and files still being written under a temporary name."""
    return name.startswith(".") or name.lower().endswith(IGNORED_SUFFIXES)


def is_candidate(path: Path, root: Path) -> bool:
    """A regular file inside root, not ignored, and not a symlink that leads out of root."""
    return candidate_stat(str(path), str(root)) is not None


def in_drop_folder(path: str, root: str) -> bool:
    """path lies under root and no part of it below root is an ignored name (a lexical test)."""
    root = root.rstrip(os.sep)
    if not path.startswith(root + os.sep):
        return False
    return not any(is_ignored_name(part) for part in path[len(root) + 1:].split(os.sep))


def candidate_stat(path: str, root: str) -> os.stat_result | None:
    """The stat of path if the watcher would take it (see is_candidate), else None; one lstat for a plain file."""
    if not in_drop_folder(path, root):
        return None
    try:
        found = os.lstat(path)
        if S_ISLNK(found.st_mode):
            return _symlink_stat(path, root)
    except OSError:
        return None
    if S_ISREG(found.st_mode):
        return found
    if not S_ISDIR(found.st_mode):  # a folder is walked, not taken
        note_skipped(path, f"{_kind(found.st_mode)}, not a file: nothing to read")
    return None


def _symlink_stat(path: str, root: str) -> os.stat_result | None:
    """What a symlink leads to, if that is a regular file inside root (a link out of root is never followed)."""
    if not Path(path).resolve().is_relative_to(Path(root).resolve()):
        log.warning("symlink leads out of its drop folder, not followed", extra={"path": path})
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    if S_ISREG(found.st_mode):
        return found
    if not S_ISDIR(found.st_mode):
        note_skipped(path, f"a symlink to {_kind(found.st_mode)}, not a file: nothing to read")
    return None


def scan_tree(root: str, start: str | None = None, *, sort: bool = False) -> Iterator[tuple[str, os.stat_result]]:
    """(path, stat) of every file under the drop folder root (or only under its subfolder start) that the
    watcher would take.

    One os.scandir open at a time and one lstat per plain file; unsorted (directory order, nothing listed
    ahead, so memory does not grow with the folder) unless `sort`, which lists each folder first and goes
    depth first in name order, like os.walk.
    """
    if start is not None and start != root and not in_drop_folder(start, root):
        return
    stack = [start or root]
    while stack:
        top = stack.pop()
        try:
            entries = os.scandir(top)
        except OSError:  # gone, or not a folder
            continue
        with entries:
            listing = sorted(entries, key=lambda e: e.name) if sort else entries
            subdirs: list[str] = []
            for entry in listing:
                if is_ignored_name(entry.name):
                    continue
                stat = _entry_stat(entry, root, subdirs)
                if stat is not None:
                    yield entry.path, stat
        stack.extend(reversed(subdirs))


def _entry_stat(entry: os.DirEntry[str], root: str, subdirs: list[str]) -> os.stat_result | None:
    try:
        if entry.is_dir(follow_symlinks=False):
            subdirs.append(entry.path)
        elif entry.is_symlink():
            return _symlink_stat(entry.path, root)
        elif entry.is_file(follow_symlinks=False):
            return entry.stat(follow_symlinks=False)
        else:
            note_skipped(entry.path, f"{_kind(entry.stat(follow_symlinks=False).st_mode)}, not a file: "
                         "nothing to read")
    except OSError:  # vanished meanwhile
        pass
    return None


def iter_candidates(root: Path) -> Iterator[Path]:
    """Every file under root (or root itself, if a file) that the watcher would take, in sorted order."""
    root = root.absolute()
    if root.is_file() or root.is_symlink():
        if not is_ignored_name(root.name) and root.is_file():
            yield root
        return
    for path, _ in scan_tree(str(root), sort=True):
        yield Path(path)


@dataclass(frozen=True)
class FileRead:
    """What intake learned about one file: its bytes (when small enough) or why there are none."""

    path: str
    sha256: str | None
    size: int | None
    mtime_ns: int | None
    data: bytes | None = None
    reason: DropReason | None = None
    vanished: bool = False
    error: str | None = None  # why it could not be read (reason UNREADABLE)


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
                                reason=DropReason.TOO_LARGE)
            # As many bytes as fstat says, and one more to see a file that grew since: a read of max_bytes + 1
            # allocates that much whatever the file's size (3x the time of the read itself for a 3 kB drop).
            data = handle.read(stat.st_size + 1)
            if len(data) > stat.st_size:
                data += handle.read(max_bytes + 1 - len(data))
    except FileNotFoundError:
        return FileRead(str(path), None, None, None, vanished=True)
    except OSError as e:  # permissions, an I/O error, a folder now: recorded, replayable once fixed
        try:
            found = os.stat(path)
        except OSError:
            found = None
        return FileRead(str(path), None, found and found.st_size, found and found.st_mtime_ns,
                        reason=DropReason.UNREADABLE, error=f"{type(e).__name__}: {e.strerror or e}")
    return FileRead(str(path), hashlib.sha256(data).hexdigest(), len(data), stat.st_mtime_ns, data=data)


@dataclass(frozen=True)
class Registered:
    drop_id: int
    path: str
    is_new: bool
    status: DropStatus


# One statement text each, whatever the number of files (so PostgreSQL and psycopg prepare it once): the
# rows travel as one array per column. Drops are inserted in (path, sha256) order, blobs in sha256 order,
# so two registrations of overlapping files (watcher and `newsflow ingest`) cannot deadlock.
BLOB_STAGE = "blob_stage"  # a temporary table: this session's own
CREATE_BLOB_STAGE = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {BLOB_STAGE} (sha256 varchar(64), size bigint, data bytea) "
                     "ON COMMIT DELETE ROWS")
COPY_BLOBS = f"COPY {BLOB_STAGE} (sha256, size, data) FROM STDIN (FORMAT BINARY)"
INSERT_BLOBS = (f"INSERT INTO blobs (sha256, size, data) SELECT sha256, size, data FROM {BLOB_STAGE} ORDER BY sha256 "
                "ON CONFLICT (sha256) DO NOTHING")
LZ4_AVAILABLE = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
INSERT_DROPS = text("""
    INSERT INTO drops (path, raw_path, sha256, size, mtime_ns, host, status, reason, detail, finished_at, stage,
                       sent_at)
    SELECT path, raw_path, sha256, size, mtime_ns, CAST(:host AS text), status, reason, detail,
           CASE WHEN status = 'queued' THEN NULL ELSE now() END,
           CASE WHEN status = 'queued' THEN 'parse' END, CASE WHEN status = 'queued' THEN now() END
    FROM unnest(CAST(:path AS text[]), CAST(:raw_path AS bytea[]), CAST(:sha256 AS varchar[]),
                CAST(:size AS bigint[]), CAST(:mtime_ns AS bigint[]), CAST(:status AS varchar[]),
                CAST(:reason AS varchar[]), CAST(:detail AS text[]))
         AS t(path, raw_path, sha256, size, mtime_ns, status, reason, detail)
    ORDER BY path, sha256
    ON CONFLICT ON CONSTRAINT uq_drops_path_sha256 DO NOTHING
    RETURNING id, path, sha256, status""")
SELECT_DROPS = text("""
    SELECT d.id, d.path, d.sha256, d.status
    FROM drops AS d JOIN unnest(CAST(:path AS text[]), CAST(:sha256 AS varchar[])) AS k(path, sha256)
         ON d.path = k.path AND d.sha256 = k.sha256""")


def _insert_blobs(session: Session, blobs: dict[str, bytes]) -> None:
    """Keep each content's bytes once. COPY into a temporary table, then one INSERT ... ON CONFLICT: bytes
    sent as arrays of bytea cost the client and the server several times more. Compressed with lz4 when the
    server has it (PostgreSQL 14+ decompresses either transparently), about 3x cheaper than the default pglz."""
    if not blobs:
        return
    proxied = session.connection().connection
    assert proxied.driver_connection is not None  # a live psycopg connection
    with proxied.driver_connection.cursor() as cur:
        if "newsflow_lz4" not in proxied.info:  # once per database connection
            proxied.info["newsflow_lz4"] = bool((cur.execute(LZ4_AVAILABLE).fetchone() or (False,))[0])
        if proxied.info["newsflow_lz4"]:
            cur.execute("SET LOCAL default_toast_compression = lz4")
        cur.execute(CREATE_BLOB_STAGE)  # each time: creating it is undone if its transaction rolls back
        with cur.copy(COPY_BLOBS) as copy:
            copy.set_types(["varchar", "int8", "bytea"])
            for sha256, data in blobs.items():
                copy.write_row((sha256, len(data), data))
        cur.execute(INSERT_BLOBS)


def _drop_state(read: FileRead, max_bytes: int) -> tuple[DropStatus, str | None, str | None]:
    """The status a file enters the ledger with, and the reason and sentence when that is terminal."""
    if read.vanished:
        return DropStatus.VANISHED, DropReason.VANISHED, "the file disappeared between discovery and reading"
    if read.reason is DropReason.UNREADABLE:
        return (DropStatus.REJECTED, read.reason.value,
                f"the file cannot be read ({read.error}); fix its permissions or the disk, then replay it")
    if read.reason is DropReason.TOO_LARGE:
        return (DropStatus.REJECTED, read.reason.value,
                f"file is {read.size:,} bytes, over the {max_bytes:,}-byte limit; not read")
    return DropStatus.QUEUED, None, None


def register_reads(session: Session, reads: Iterable[FileRead], *, host: str, max_bytes: int) -> list[Registered]:
    """Record files in the ledger: one drop per (path, content); a file seen before is not new.

    Returns one entry per distinct (path, content) read, in the order read (a vanished or unreadable file,
    whose content is unknown, is a new drop each time), with the path as stored (stored_path).
    """
    reads = list(reads)
    if not reads:
        return []
    _insert_blobs(session, {r.sha256: r.data for r in reads if r.data is not None and r.sha256})
    states = [_drop_state(r, max_bytes) for r in reads]
    keys = [(stored_path(r.path), r.sha256) for r in reads]
    inserted = session.execute(INSERT_DROPS, {
        "host": host, "path": [path for path, _ in keys], "raw_path": [raw_path(r.path) for r in reads],
        "sha256": [r.sha256 for r in reads],
        "size": [r.size for r in reads], "mtime_ns": [r.mtime_ns for r in reads],
        "status": [s[0].value for s in states], "reason": [s[1] for s in states], "detail": [s[2] for s in states],
    }).all()
    found: dict[tuple[str, str | None], Registered] = {}
    vanished: list[Registered] = []
    for row in inserted:
        entry = Registered(row.id, row.path, True, DropStatus(row.status))
        if row.sha256 is None:
            vanished.append(entry)
        else:
            found[(row.path, row.sha256)] = entry
    known = list(dict.fromkeys(key for key in keys if key[1] and key not in found))
    if known:
        for row in session.execute(SELECT_DROPS, {"path": [k[0] for k in known], "sha256": [k[1] for k in known]}):
            found[(row.path, row.sha256)] = Registered(row.id, row.path, False, DropStatus(row.status))
    ordered = [found.pop(key) for key in dict.fromkeys(keys) if key in found]
    return ordered + vanished


@dataclass(frozen=True)
class Taken:
    consumed: int  # paths used, from the front of those given
    reads: list[FileRead]
    registered: list[Registered]
    sent: list[int]  # new drops sent to the parse queue


def take_files(sessions: sessionmaker[Session], paths: Sequence[str | Path], *, host: str, max_bytes: int,
               send: Callable[[list[int]], object]) -> Taken:
    """Read -> register -> dispatch, the one way files enter the pipeline (the watcher and `ingest`): the
    first of these files (TAKE_FILES, or fewer once TAKE_BYTES of contents are held) are read, recorded in
    the ledger in one transaction, and the new queued drops sent after the commit."""
    reads: list[FileRead] = []
    held = 0
    for path in paths:
        if len(reads) >= TAKE_FILES or held >= TAKE_BYTES:
            break
        reads.append(read_file(Path(path), max_bytes))
        held += len(reads[-1].data or b"")
    if not reads:
        return Taken(0, [], [], [])
    with transaction(sessions) as session:
        registered = register_reads(session, reads, host=host, max_bytes=max_bytes)
    new = [r.drop_id for r in registered if r.is_new and r.status is DropStatus.QUEUED]
    send(new)
    return Taken(len(reads), reads, registered, new)
