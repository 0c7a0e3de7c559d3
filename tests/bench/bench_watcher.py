"""The watcher's targets (SPEC 9): a backlog taken at 2k files/s or more with bounded memory, and a file
renamed into a drop folder queryable within 1 s at the 95th percentile at half of capacity.

Run: python tests/bench/bench_watcher.py [backlog|latency|all] [--files N] [--rate R] [--duration S] [--json]

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) and Redis at 127.0.0.1:6379 (db 12 is
flushed). Every run gets a fresh database and a temporary folder, removed on the way out (Ctrl-C and
SIGTERM too). Drop files are distinct versions of tests/data/wikinews/*.txt (one numbered paragraph
added before the credit line).

backlog: N files (default 100,000) are written, then `newsflow watcher` starts on the folder; the figure is
files recorded in the ledger per second, from the watcher's start (process start, so imports, loading the
ledger and the first walk count) and from its first drop row, to the last row. No worker runs: this is the
watcher's own intake, so NEWSFLOW_WATCHER__MAX_QUEUE_DEPTH is raised above N / batch_size for the run (with
the default 500 messages it would pause, as it should, after 10,000 files until workers drain the queue).
Every drop id is then checked to be in exactly one message on the parse queue. Memory: the watcher's peak
RSS (sampled every 20 ms) against its RSS watching an empty folder.

latency: worker (--concurrency 2), storage and watcher run with default settings. Unless --rate is given,
capacity is measured first: a burst of files renamed in at once, from the first rename to the last drop
finished; the rate is then half of it. Files are then written under a temporary name and renamed in at that
steady rate for --duration seconds; the latency of a file is from the end of its rename to its drop ending
`stored` or `duplicate`: as seen by a client polling the ledger every POLL_S (queryable, committed), and as
its `finished_at` (the storing transaction's start). Both clocks are this machine's wall clock.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis

from shared.celery_app import create_celery
from shared.queues import Queue

WIKINEWS = Path(__file__).resolve().parents[1] / "data" / "wikinews"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/12"
BATCH_SIZE = 20  # the default NEWSFLOW_PIPELINE__BATCH_SIZE
SETTLE_S = 2.0  # the default NEWSFLOW_WATCHER__SETTLE_S: older files are complete at the first walk
READY_TIMEOUT_S = 60.0
TAKE_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30.0
RSS_SAMPLE_S = 0.02
IDLE_RSS_S = 3.0  # how long the watcher of an empty folder runs before its RSS is read
POLL_S = 0.02
Figures = dict[str, Any]


def newsflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


@contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh database, dropped (connections and all) on the way out."""
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


def bench_env(database_url: str, **settings: object) -> dict[str, str]:
    extra = {f"NEWSFLOW_{key.upper()}": str(value) for key, value in settings.items()}
    return {**os.environ, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": BROKER_URL, **extra}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the services' graceful stop), then SIGKILL if it does not end in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def service(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
        try:
            yield proc
        finally:
            stop(proc)


def wait_log(proc: subprocess.Popen[bytes], log_path: Path, needle: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while needle not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log_path.name}: never logged {needle!r}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.02)


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
    """Distinct drop files: wikinews article k mod 295 with a paragraph naming k added before the credit line."""

    def __init__(self) -> None:
        self.sources = []
        for path in sorted(WIKINEWS.glob("*.txt")):
            head, _, credit = path.read_bytes().rstrip(b"\n").rpartition(b"\n")
            self.sources.append((head + b"\n", credit + b"\n"))

    def data(self, k: int) -> bytes:
        head, credit = self.sources[k % len(self.sources)]
        return b"%sThis is version %d of the article, written for the watcher benchmark.\n%s" % (head, k, credit)

    def write(self, folder: Path, ks: range) -> None:
        for k in ks:
            fd = os.open(folder / f"drop_{k:07d}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, self.data(k))
            finally:
                os.close(fd)


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


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def idle_rss(env: dict[str, str], logs: Path) -> int:
    """The watcher's RSS after IDLE_RSS_S watching an empty folder (ledger loaded, first walk done)."""
    empty = logs / "empty"
    empty.mkdir(exist_ok=True)
    log_path = logs / "watcher-empty.log"
    with service(newsflow("watcher", "--drop", str(empty)), env, log_path) as proc:
        wait_log(proc, log_path, "watching")
        time.sleep(IDLE_RSS_S)
        return psutil.Process(proc.pid).memory_info().rss


def ledger_progress(conn: psycopg.Connection) -> tuple[int, float | None, float | None]:
    row = conn.execute("SELECT count(*), extract(epoch FROM min(discovered_at)), "
                       "extract(epoch FROM max(discovered_at)) FROM drops").fetchone()
    assert row is not None
    return int(row[0]), row[1] and float(row[1]), row[2] and float(row[2])


def queued_ids() -> list[int]:
    """Every drop id in the messages waiting on the parse queue (kombu's Redis list, JSON bodies)."""
    ids: list[int] = []
    for raw in redis.Redis.from_url(BROKER_URL).lrange(Queue.PARSE.value, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _, kwargs, _ = json.loads(body)
        ids += kwargs["drop_ids"]
    return ids


def take_backlog(env: dict[str, str], folder: Path, files: int, logs: Path) -> Figures:
    """Start the watcher on the backlog and wait until every file is in the ledger."""
    log_path = logs / "watcher-backlog.log"
    with psycopg.connect(env["NEWSFLOW_DATABASE_URL"], autocommit=True) as conn:
        start = time.time()
        with service(newsflow("watcher", "--drop", str(folder)), env, log_path) as proc:
            sampler = RssSampler(proc.pid)
            sampler.start()
            deadline = time.monotonic() + TAKE_TIMEOUT_S
            while (progress := ledger_progress(conn))[0] < files:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"watcher took {progress[0]} of {files} files; see {log_path}")
                time.sleep(0.1)
            seen_all = time.time()
            time.sleep(0.5)  # the last message is sent just after the last commit
            cpu = psutil.Process(proc.pid).cpu_times()
            sampler.done.set()
            sampler.join()
        rows = {r[0] for r in conn.execute("SELECT id FROM drops WHERE status = 'queued'")}
    count, first, last = progress
    assert first is not None and last is not None
    ids = queued_ids()
    if set(ids) != rows or len(rows) != files:
        raise RuntimeError(f"{files} files: {len(rows)} queued drops, {len(set(ids))} distinct ids in messages "
                           f"({len(set(ids) - rows)} unknown)")
    return {"files": count, "startup_s": round(first - start, 2), "last_row_s": round(last - start, 2),
            "seen_all_s": round(seen_all - start, 2),
            "files_per_s_from_start": round(count / (last - start), 1),
            "files_per_s_from_first_row": round(count / max(last - first, 1e-9), 1),
            "cpu_s": round(cpu.user + cpu.system, 2), "cpu_ms_per_1k_files": round(1e6 * (cpu.user + cpu.system)
                                                                                    / count, 1),
            "peak_rss_mib": mib(sampler.peak), "end_rss_mib": mib(sampler.last),
            "messages": redis.Redis.from_url(BROKER_URL).llen(Queue.PARSE.value), "resent": len(ids) - len(rows)}


def backlog_once(corpus: Corpus, files: int, run: int, logs: Path) -> Figures:
    folder = logs / "backlog"
    folder.mkdir()
    start = time.monotonic()
    corpus.write(folder, range(files))
    written_s = time.monotonic() - start
    redis.Redis.from_url(BROKER_URL).flushdb()
    depth = files // BATCH_SIZE + 1000
    try:
        with database(f"newsflow_bench_watcher_{os.getpid()}_b{run}") as url:
            env = bench_env(url, watcher__max_queue_depth=depth)
            rss_empty = idle_rss(env, logs)
            time.sleep(max(0.0, SETTLE_S + 0.5 - (time.monotonic() - start - written_s)))
            figures = take_backlog(env, folder, files, logs)
    finally:
        redis.Redis.from_url(BROKER_URL).flushdb()
        shutil.rmtree(folder)
    return figures | {"written_s": round(written_s, 2), "max_queue_depth": depth, "idle_rss_mib": mib(rss_empty),
                      "rss_growth_mib": round(figures["peak_rss_mib"] - mib(rss_empty), 1)}


def percentiles(values: list[float]) -> Figures:
    values = sorted(values)
    if not values:
        return {}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 3)

    return {"n": len(values), "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(values[-1], 3),
            "mean": round(statistics.fmean(values), 3)}


class LedgerPoller(threading.Thread):
    """Records when each drop is first seen `stored` or `duplicate` by a client polling every POLL_S."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, tuple[float, float]] = {}  # path -> (seen at, finished_at)
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        low = 0  # every drop below this id was seen finished
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while not self.done.wait(POLL_S):
                    rows = conn.execute("SELECT id, path, status, extract(epoch FROM finished_at) FROM drops "
                                        "WHERE id >= %s ORDER BY id", (low,)).fetchall()
                    now = time.time()
                    for _, path, status, finished in rows:
                        if status in ("stored", "duplicate") and path not in self.seen:
                            self.seen[path] = (now, float(finished))
                    queued = [r[0] for r in rows if r[2] == "queued"]
                    low = min(queued) if queued else (rows[-1][0] + 1 if rows else low)
        except BaseException as e:
            self.error = e


def rename_in(folder: Path, corpus: Corpus, k: int) -> tuple[str, float]:
    """Write drop k under a temporary name and rename it in; returns its path and when the rename ended."""
    path = folder / f"drop_{k:07d}.txt"
    tmp = folder / f"drop_{k:07d}.txt.tmp"
    tmp.write_bytes(corpus.data(k))
    os.rename(tmp, path)
    return str(path), time.time()


def wait_seen(poller: LedgerPoller, paths: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(p not in poller.seen for p in paths):
        if poller.error or time.monotonic() > deadline:
            missing = sum(p not in poller.seen for p in paths)
            raise RuntimeError(f"{missing} of {len(paths)} files never finished ({poller.error!r})")
        time.sleep(0.1)


def capacity(folder: Path, corpus: Corpus, poller: LedgerPoller, burst: int, first_k: int) -> float:
    """Files/s end to end: `burst` files renamed in at once, first rename to last drop finished."""
    for k in range(first_k, first_k + burst):
        (folder / f"drop_{k:07d}.txt.tmp").write_bytes(corpus.data(k))
    start = time.time()
    paths = []
    for k in range(first_k, first_k + burst):
        path = folder / f"drop_{k:07d}.txt"
        os.rename(folder / f"drop_{k:07d}.txt.tmp", path)
        paths.append(str(path))
    wait_seen(poller, paths, TAKE_TIMEOUT_S)
    return burst / (max(poller.seen[p][1] for p in paths) - start)


def stream(folder: Path, corpus: Corpus, poller: LedgerPoller, rate: float, count: int, first_k: int) -> Figures:
    """Rename `count` files in at `rate` files/s; the latency of each, rename to finished."""
    renamed: dict[str, float] = {}
    start = time.time() + 0.2
    for i in range(count):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        path, at = rename_in(folder, corpus, first_k + i)
        renamed[path] = at
    written_s = time.time() - start
    wait_seen(poller, list(renamed), 120.0)
    return {"files": count, "written_s": round(written_s, 2), "achieved_rate": round(count / written_s, 1),
            "queryable": percentiles([poller.seen[p][0] - t for p, t in renamed.items()]),
            "finished_at": percentiles([poller.seen[p][1] - t for p, t in renamed.items()])}


def latency_once(corpus: Corpus, rate: float | None, duration: float, burst: int, logs: Path) -> Figures:
    folder = logs / "latency"
    folder.mkdir()
    redis.Redis.from_url(BROKER_URL).flushdb()
    tag = f"bench{os.getpid()}"
    names = [f"worker-{tag}@lat", f"storage-{tag}@lat"]
    try:
        with database(f"newsflow_bench_watcher_{os.getpid()}_lat") as url, ExitStack() as stack:
            env = bench_env(url)
            procs = [stack.enter_context(service(newsflow("worker", "--concurrency", "2", "-n", names[0]), env,
                                                 logs / "worker.log")),
                     stack.enter_context(service(newsflow("storage", "-n", names[1]), env, logs / "storage.log"))]
            wait_ready(names, procs)
            watcher = stack.enter_context(service(newsflow("watcher", "--drop", str(folder)), env,
                                                  logs / "watcher-latency.log"))
            wait_log(watcher, logs / "watcher-latency.log", "watching")
            poller = LedgerPoller(url)
            poller.start()
            stack.callback(poller.done.set)
            measured = capacity(folder, corpus, poller, burst, 0) if rate is None else None
            use = rate or measured / 2  # type: ignore[operator]
            figures = stream(folder, corpus, poller, use, max(1, int(use * duration)), burst)
    finally:
        redis.Redis.from_url(BROKER_URL).flushdb()
        shutil.rmtree(folder)
    return {"capacity_files_per_s": measured and round(measured, 1), "burst": burst if measured else None,
            "rate": round(use, 1), "rate_source": "given" if rate else "half the measured capacity"} | figures


def format_backlog(runs: list[Figures]) -> list[str]:
    lines = []
    for i, r in enumerate(runs, 1):
        lines += [
            f"backlog run {i}: {r['files']} files (written in {r['written_s']:.1f} s), watcher alone, "
            f"max_queue_depth raised to {r['max_queue_depth']} messages (no workers run: its own intake)",
            f"  recorded in the ledger and enqueued: {r['files_per_s_from_start']:.0f} files/s from watcher "
            f"start ({r['last_row_s']:.1f} s; first row after {r['startup_s']:.2f} s), "
            f"{r['files_per_s_from_first_row']:.0f} files/s from the first row",
            f"  {r['messages']} messages on the parse queue, every drop id in one ({r['resent']} sent again by the "
            f"reconciler: lease_s ran out); watcher CPU "
            f"{r['cpu_s']:.1f} s ({r['cpu_ms_per_1k_files']:.0f} ms per 1k files)",
            f"  watcher RSS: {r['idle_rss_mib']:.1f} MiB watching an empty folder, peak {r['peak_rss_mib']:.1f} MiB "
            f"with the backlog (+{r['rss_growth_mib']:.1f} MiB), {r['end_rss_mib']:.1f} MiB at the end",
        ]
    return lines


def format_latency(r: Figures) -> list[str]:
    lines = ["latency: watcher + worker (--concurrency 2) + storage, default settings"]
    if r["capacity_files_per_s"]:
        lines.append(f"  capacity: {r['capacity_files_per_s']:.0f} files/s end to end ({r['burst']} files "
                     "renamed in at once, first rename to last finished)")
    lines.append(f"  rate: {r['rate']:.1f} files/s ({r['rate_source']}); {r['files']} files renamed in over "
                 f"{r['written_s']:.1f} s (achieved {r['achieved_rate']:.1f} files/s)")
    for key, label in (("queryable", f"seen stored by a client polling every {POLL_S * 1000:.0f} ms"),
                       ("finished_at", "drop's finished_at (transaction start)")):
        p = r[key]
        lines.append(f"  rename -> {label}: p50 {p['p50']:.3f} s, p95 {p['p95']:.3f} s, p99 {p['p99']:.3f} s, "
                     f"max {p['max']:.3f} s")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", nargs="?", choices=("backlog", "latency", "all"), default="all")
    parser.add_argument("--files", type=int, default=100_000, help="backlog files (default 100,000)")
    parser.add_argument("--repeat", type=int, default=1, help="backlog runs (default 1)")
    parser.add_argument("--rate", type=float, help="latency: files/s (default: half the measured capacity)")
    parser.add_argument("--burst", type=int, default=3000, help="latency: files of the capacity burst")
    parser.add_argument("--duration", type=float, default=30.0, help="latency: seconds of steady writing")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--logs", type=Path, help="keep the services' logs in this (new) folder")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally blocks) on kill too
    corpus, result = Corpus(), {}
    with ExitStack() as stack:
        if args.logs:
            args.logs.mkdir(parents=True)
            logs = args.logs.absolute()
        else:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="newsflow-bench-watcher-")))
        if args.phase in ("backlog", "all"):
            result["backlog"] = [backlog_once(corpus, args.files, run, logs) for run in range(max(1, args.repeat))]
        if args.phase in ("latency", "all"):
            result["latency"] = latency_once(corpus, args.rate, args.duration, args.burst, logs)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    lines = format_backlog(result.get("backlog", []))
    lines += format_latency(result["latency"]) if "latency" in result else []
    print("\n".join(lines))


if __name__ == "__main__":
    main()
