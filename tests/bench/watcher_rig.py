"""Servers, service processes, drop files and memory sampling for bench_watcher.py.

PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth): a fresh database per run, dropped on the way
out. Redis at 127.0.0.1:6379, database 12 (other benches use 13 and 15), flushed before and after.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
from common import service, stop  # noqa: F401  (re-exported for bench_watcher)

from shared.celery_app import create_celery

WIKINEWS = Path(__file__).resolve().parents[1] / "data" / "wikinews"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/12"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
RSS_SAMPLE_S = 0.02
POLL_S = 0.02  # how often the latency client polls the ledger


def newsflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def bench_env(database_url: str, **settings: object) -> dict[str, str]:
    """The services' environment: these servers, and NEWSFLOW_<KEY> for each setting given (a__b nests)."""
    extra = {f"NEWSFLOW_{key.upper()}": str(value) for key, value in settings.items()}
    return {**os.environ, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": BROKER_URL, **extra}


@contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh database at the latest schema, dropped (connections and all) on the way out."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        subprocess.run(newsflow("migrate"), env=bench_env(url), check=True, capture_output=True)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_log(proc: subprocess.Popen[bytes], log_path: Path, needle: str, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Until the service logs a line with needle; returns that line."""
    deadline = time.monotonic() + timeout_s
    while not (lines := [line for line in log_path.read_text(errors="replace").splitlines() if needle in line]):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log_path.name}: never logged {needle!r}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.02)
    return lines[0]


def wait_ready(names: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    """Ping the Celery nodes until every one answers."""
    app, deadline = create_celery(BROKER_URL), time.monotonic() + READY_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a service exited during start-up; see its log")
            replies = app.control.ping(destination=names, timeout=0.5)
            if {name for reply in replies for name in reply} >= set(names):
                return
        raise RuntimeError(f"services not ready after {READY_TIMEOUT_S:.0f} s: {names}")
    finally:
        app.close()


class Corpus:
    """Distinct drop files, few of them near-duplicates of each other (as in a real feed): file k has the
    header, credit line and first PART_WORDS words of wikinews article k mod 295, then PART_WORDS words of
    each of two others chosen by k, then a sentence naming k. Two files share at most one part, so the
    Jaccard of their word 5-shingles stays about 1/3 or less, under the 0.8 of near-duplicates."""

    PART_WORDS = 150

    def __init__(self) -> None:
        self.sources = []
        for path in sorted(WIKINEWS.glob("*.txt")):
            header, *paragraphs, credit = path.read_bytes().rstrip(b"\n").split(b"\n")
            words = b" ".join(paragraphs).split()
            if len(words) >= 50:
                self.sources.append((header, words, credit))

    def data(self, k: int) -> bytes:
        n = len(self.sources)
        header, words, credit = self.sources[k % n]
        others = random.Random(k).sample([i for i in range(n) if i != k % n], 2)
        parts = [words[:self.PART_WORDS]] + [self.sources[i][1][-self.PART_WORDS:] for i in others]
        lines = [b" ".join(part[i:i + 50]) for part in parts for i in range(0, len(part), 50)]
        extra = b"This is version %d of the article, written for the watcher benchmark." % k
        return b"\n".join([header, *lines, extra, credit]) + b"\n"

    @staticmethod
    def name(k: int) -> str:
        return f"drop_{k:07d}.txt"

    def write(self, folder: Path, ks: range) -> None:
        for k in ks:
            fd = os.open(folder / self.name(k), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, self.data(k))
            finally:
                os.close(fd)

    def rename_in(self, folder: Path, k: int) -> tuple[str, float]:
        """Write drop k under a temporary name and rename it in; returns its path and when the rename ended."""
        path, tmp = folder / self.name(k), folder / (self.name(k) + ".tmp")
        tmp.write_bytes(self.data(k))
        os.rename(tmp, path)
        return str(path), time.time()


class RssSampler(threading.Thread):
    """The peak resident set size of the watcher, sampled every RSS_SAMPLE_S until stopped or it exits.

    `newsflow watcher` imports the whole CLI, then replaces itself (exec, same pid) with the watcher
    module: only the watcher is measured, from when its command line shows it.
    """

    def __init__(self, pid: int, module: str = "services.watcher") -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.module = module
        self.peak = self.last = 0
        self.done = threading.Event()

    def run(self) -> None:
        execed = False
        while not self.done.wait(RSS_SAMPLE_S):
            try:
                execed = execed or self.module in self.process.cmdline()
                if execed:
                    self.last = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)

    def stop(self) -> None:
        self.done.set()
        self.join()


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def percentiles(values: list[float]) -> dict[str, Any]:
    values = sorted(values)

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"n": len(values), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(values[-1], 3),
            "mean": round(statistics.fmean(values), 3)}


class LedgerPoller(threading.Thread):
    """Records when each drop is first seen `stored` or `duplicate` by a client polling every POLL_S."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, tuple[float, float, float]] = {}  # path -> (seen at, finished_at, discovered_at)
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        low = 0  # every drop below this id was seen finished
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.done.wait(POLL_S):
                    rows = conn.execute("SELECT id, path, status, extract(epoch FROM finished_at), "
                                        "extract(epoch FROM discovered_at) FROM drops WHERE id >= %s ORDER BY id",
                                        (low,)).fetchall()
                    now = time.time()
                    for _, path, status, finished, discovered in rows:
                        if status in ("stored", "duplicate") and path not in self.seen:
                            self.seen[path] = (now, float(finished), float(discovered))
                    queued = [r[0] for r in rows if r[2] == "queued"]
                    low = min(queued) if queued else (rows[-1][0] + 1 if rows else low)
        except BaseException as e:
            self.error = e

    def wait_for(self, paths: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(p not in self.seen for p in paths):
            if self.error or time.monotonic() > deadline:
                missing = sum(p not in self.seen for p in paths)
                raise RuntimeError(f"{missing} of {len(paths)} files never finished ({self.error!r})")
            time.sleep(0.1)


def start_pipeline(stack: ExitStack, env: dict[str, str], logs: Path, tag: str) -> None:
    """A worker (--concurrency 2) and a storage process, answering pings, stopped when the stack closes."""
    names = [f"worker-bench{os.getpid()}@{tag}", f"storage-bench{os.getpid()}@{tag}"]
    procs = [stack.enter_context(service(newsflow("worker", "--concurrency", "2", "-n", names[0]), env,
                                         logs / f"worker-{tag}.log")),
             stack.enter_context(service(newsflow("storage", "-n", names[1]), env, logs / f"storage-{tag}.log"))]
    wait_ready(names, procs)
