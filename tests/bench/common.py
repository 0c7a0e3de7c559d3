"""What every benchmark script stands on: fresh databases, service processes, readiness, CPU accounting, cleanup.

Scripts in tests/bench import this as `common` (Python puts a script's own folder first on sys.path).
Servers: the machine's PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) and Redis at
127.0.0.1:6379 database 13 (flushed; other work here uses 11, 12 and 15), or the Redis URL in
NEWSFLOW_BENCH_BROKER_URL, so two benches run side by side each on a database of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import psutil
import redis

sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # the project root: tests.support
from shared.celery_app import create_celery
from tests.support import scratch_database

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = os.environ.get("NEWSFLOW_BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
READY_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 180.0
IDLE_WINDOW_S = 1.0
IDLE_CPU_S = 0.15  # CPU seconds per IDLE_WINDOW_S below which a set of processes counts as idle
STOP_TIMEOUT_S = 30.0
SAMPLE_INTERVAL_S = 0.5


def db_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def database(name: str) -> AbstractContextManager[str]:
    """A fresh database, dropped (connections and all) on the way out (the tests' own helper)."""
    return scratch_database(ADMIN_URL, name)


SENTINEL_KEY = "newsflow-bench:owner"


def flush_broker() -> list[str]:
    """Empty the benchmark's Redis database and mark it as ours; returns the other programs connected to it
    (one using the same database would take or flush this run's messages)."""
    others = broker_clients(set())
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    broker.set(SENTINEL_KEY, str(os.getpid()))
    return others


def broker_clients(own_pids: set[int]) -> list[str]:
    """Programs other than this one and own_pids connected to the benchmark's Redis database ("pid command")."""
    broker = redis.Redis.from_url(BROKER_URL)
    number = str(broker.connection_pool.connection_kwargs.get("db", 0))
    ports = {int(c["addr"].rsplit(":", 1)[1]) for c in broker.client_list() if str(c.get("db")) == number}
    try:
        pids = {c.pid for c in psutil.net_connections("tcp") if c.pid and c.laddr and c.laddr.port in ports}
    except psutil.AccessDenied:  # not root: say how many, not who
        return [f"{len(ports) - 1} connection(s)"] if len(ports) > 1 else []
    found = []
    for pid in sorted(pids - own_pids - {os.getpid()}):
        try:
            found.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:100]}")
        except psutil.NoSuchProcess:
            continue
    return found


def broker_intact() -> bool:
    """Whether the mark flush_broker() set is still there (nobody flushed the database meanwhile)."""
    return redis.Redis.from_url(BROKER_URL).get(SENTINEL_KEY) == str(os.getpid()).encode()


def service_env(base: dict[str, str], database_url: str, **extra: str) -> dict[str, str]:
    """The services get the servers' URLs in their environment (as `newsflow up` gives them)."""
    return {**base, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": BROKER_URL, **extra}


def newsflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the main process (Celery's warm shutdown), then SIGKILL if it does not end in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def service(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process logging to log_path, stopped on the way out. In its own process group, so a Ctrl-C
    reaches this script alone and the child gets one orderly SIGTERM from stop()."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent,
                                process_group=0)
        try:
            yield proc
        finally:
            stop(proc)


def wait_ready(names: list[str], procs: list[subprocess.Popen[bytes]]) -> float:
    """Ping the Celery nodes until every one answers; returns how long that took."""
    app, start = create_celery(BROKER_URL), time.monotonic()
    try:
        while time.monotonic() - start < READY_TIMEOUT_S:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a service exited during start-up; see its log")
            replies = app.control.ping(destination=names, timeout=0.5)
            if {name for reply in replies for name in reply} >= set(names):
                return time.monotonic() - start
        raise RuntimeError(f"services not ready after {READY_TIMEOUT_S:.0f} s: {names}")
    finally:
        app.close()


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (gone ones left out)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of these processes themselves (not of reaped children)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system
    return total


def wait_idle(procs: list[subprocess.Popen[bytes]]) -> float:
    """Wait until the processes' trees use less than IDLE_CPU_S per IDLE_WINDOW_S, so a pool process still
    loading (the enricher's spaCy model) is not timed; returns how long that took."""
    start = time.monotonic()
    last = cpu_seconds([p for proc in procs for p in tree(proc.pid)])
    while time.monotonic() - start < IDLE_TIMEOUT_S:
        time.sleep(IDLE_WINDOW_S)
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a service exited during start-up; see its log")
        now = cpu_seconds([p for proc in procs for p in tree(proc.pid)])
        if now - last < IDLE_CPU_S:
            return time.monotonic() - start
        last = now
    raise RuntimeError(f"services still busy after {IDLE_TIMEOUT_S:.0f} s")


def postgres_processes(database: str | None = None) -> list[psutil.Process]:
    """PostgreSQL's processes; with a database name, only the backends connected to it (by process title)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] not in ("postgres", "postmaster"):
            continue
        title = " ".join(p.info["cmdline"] or [])
        if database is None or f" {database} " in title:
            found.append(p)
    return found


def named_processes(name: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] == name]


class CpuMeter:
    """CPU seconds used by groups of processes during a window, sampled every SAMPLE_INTERVAL_S, so processes
    that start inside the window (a new backend, the ingest command) count from zero."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups
        self.first: dict[str, dict[int, float]] = {g: {} for g in groups}
        self.last: dict[str, dict[int, float]] = {g: {} for g in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started_at = self.wall_s = 0.0
        self._machine: list = []  # psutil.cpu_times() of the whole machine at start and end

    def _sample(self) -> None:
        for group, find in self.groups.items():
            for p in find():
                try:
                    t = p.cpu_times()
                    born = p.create_time()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                cpu = t.user + t.system
                if p.pid not in self.first[group]:
                    self.first[group][p.pid] = 0.0 if born >= self.started_at else cpu
                self.last[group][p.pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self.started_at = time.time()
        self._machine.append(psutil.cpu_times())
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._machine.append(psutil.cpu_times())
        self.wall_s = time.time() - self.started_at

    def by_pid(self, group: str) -> dict[int, float]:
        """CPU seconds of each process of a group during the window."""
        return {pid: round(self.last[group][pid] - self.first[group][pid], 3) for pid in self.last[group]}

    def seconds(self) -> dict[str, float]:
        """CPU seconds per group, plus 'machine': every process on the machine (busy time of all cores)."""
        used = {g: round(sum(self.by_pid(g).values()), 3) for g in self.groups}
        before, after = self._machine
        busy = (sum(after) - after.idle - getattr(after, "iowait", 0.0)) - (
            sum(before) - before.idle - getattr(before, "iowait", 0.0))
        return used | {"machine": round(busy, 3)}


@contextmanager
def workspace(keep: Path | None, prefix: str) -> Iterator[Path]:
    """The folder for logs and generated drops: `keep` if given (must not exist yet), else a temporary one."""
    with ExitStack() as stack:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=False)
            yield keep.absolute()
        else:
            yield Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit like Ctrl-C raises KeyboardInterrupt, so every `finally` (processes stopped,
    databases dropped, temporary folders removed) runs on a kill too."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
