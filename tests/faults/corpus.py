"""The fault tests' drops: the wikinews files in two versions each, what they should become, and a feeder
that writes them into the watched folder as a producer would."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from services.worker.parsing import parse_drop
from shared.records import ParsedArticle
from tests.support import ROOT, write_atomically

WIKINEWS = ROOT / "tests" / "data" / "wikinews"
MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class DropFile:
    name: str
    data: bytes


def second_version(data: bytes, stem: str) -> bytes:
    """One paragraph more before the last line (the credit line), as bench_ingest.copy_drops makes them."""
    lines = data.rstrip(b"\n").split(b"\n")
    return b"\n".join([*lines[:-1], f"Second version of {stem}, with one paragraph more.".encode(), lines[-1]]) + b"\n"


@cache
def corpus() -> tuple[DropFile, ...]:
    """The 295 wikinews files in two distinct versions each: 590 files."""
    files = []
    for path in sorted(WIKINEWS.glob("*.txt")):
        data = path.read_bytes()
        files.append(DropFile(f"{path.stem}_0.txt", data))
        files.append(DropFile(f"{path.stem}_1.txt", second_version(data, path.stem)))
    return tuple(files)


@cache
def content_hash(data: bytes) -> str | None:
    result = parse_drop(data, max_bytes=MAX_BYTES)
    return result.content_hash if isinstance(result, ParsedArticle) else None


def expected_hashes(datas: Sequence[bytes]) -> set[str]:
    return {h for h in map(content_hash, datas) if h is not None}


class Feeder:
    """Writes files into the watched folder from a background thread, like a producer would."""

    def __init__(self, folder: Path, files: Sequence[DropFile], *, per_second: float | None = None) -> None:
        self.folder = folder
        self.files = list(files)
        self.interval = 1 / per_second if per_second else 0.0
        self.written = 0
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            start = time.monotonic()
            for i, f in enumerate(self.files):
                if self.interval:
                    time.sleep(max(0.0, start + i * self.interval - time.monotonic()))
                write_atomically(self.folder / f.name, f.data)
                self.written += 1
        except BaseException as e:  # reported by join()
            self.error = e

    def start(self) -> Feeder:
        self.thread.start()
        return self

    def join(self, timeout_s: float = 120.0) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error
