"""End-to-end throughput of `newsflow ingest --wait` with 1 and 2 worker processes, beside a naive baseline.

Run: python tests/bench/bench_ingest.py [--repeat N] [--copies N] [--files DIR] [--json] [--logs DIR]

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) and Redis at 127.0.0.1:6379 (db 13 is
flushed). Every pipeline run gets a fresh database. The worker and storage services are started by
this script and pinged until they answer before `newsflow ingest --workers 0` runs, so the figure
(first enqueue to last terminal state, as ingest reports it) measures the pipeline, not start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis

from services.worker.parsing import parse_drop
from shared.celery_app import create_celery
from shared.records import ParsedArticle

DEFAULT_FILES = Path(__file__).resolve().parents[1] / "data" / "wikinews"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/13"
WORKER_COUNTS = (1, 2)
READY_TIMEOUT_S = 60.0
INGEST_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 30.0
Figures = dict[str, Any]
NAIVE_TABLE = """CREATE TABLE naive_articles (
    id bigserial PRIMARY KEY, path text NOT NULL, title text, content_hash text, body text, reason text)"""


def db_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh database, dropped (connections and all) on the way out."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield db_url(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_drops(source: Path, target: Path, copies: int) -> list[Path]:
    """Only the drop files (*.txt), each in `copies` distinct versions (one paragraph added before
    the credit line), so a run is long enough to measure and no copy is an exact duplicate."""
    for path in sorted(source.glob("*.txt")):
        lines = path.read_bytes().rstrip(b"\n").split(b"\n")
        for k in range(copies):
            extra = [f"Benchmark copy {k} of {path.stem}.".encode()] if k else []
            (target / f"{path.stem}_{k}.txt").write_bytes(b"\n".join(lines[:-1] + extra + lines[-1:]) + b"\n")
    return sorted(target.glob("*.txt"))


def naive_once(files: list[Path], url: str) -> float:
    """Read, parse and INSERT each file in this process, one commit per file; returns files/s."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS naive_articles")
        conn.execute(NAIVE_TABLE)
        conn.commit()
        start = time.perf_counter()
        for path in files:
            result = parse_drop(path.read_bytes())
            if isinstance(result, ParsedArticle):
                row = (str(path), result.title, result.content_hash, result.body, None)
            else:
                row = (str(path), None, None, None, result.reason.value)
            conn.execute("INSERT INTO naive_articles (path, title, content_hash, body, reason) "
                         "VALUES (%s, %s, %s, %s, %s)", row)
            conn.commit()
        return len(files) / (time.perf_counter() - start)


def bench_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": BROKER_URL}


def newsflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL if it does not end in time."""
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


def pipeline_once(folder: Path, workers: int, run: int, logs: Path) -> Figures:
    """One `newsflow ingest --wait` over folder with `workers` parse processes and one storage process."""
    redis.Redis.from_url(BROKER_URL).flushdb()
    with database(f"newsflow_bench_{os.getpid()}_{workers}_{run}") as url:
        env = bench_env(url)
        subprocess.run(newsflow("migrate"), env=env, check=True, capture_output=True, cwd=logs)
        tag, host = f"w{workers}r{run}", f"bench{os.getpid()}"
        names = [f"worker-{host}@{tag}", f"storage-{host}@{tag}"]
        with ExitStack() as stack:
            procs = [
                stack.enter_context(service(newsflow("worker", "--concurrency", str(workers), "-n", names[0]),
                                            env, logs / f"worker-{tag}.log")),
                stack.enter_context(service(newsflow("storage", "-n", names[1]), env, logs / f"storage-{tag}.log")),
            ]
            ready_s = wait_ready(names, procs)
            out = subprocess.run(newsflow("ingest", str(folder), "--wait", "--workers", "0", "--json"), env=env,
                                 capture_output=True, timeout=INGEST_TIMEOUT_S, cwd=logs)
    if out.returncode:
        raise RuntimeError(f"newsflow ingest failed ({out.returncode}): {out.stderr.decode()[-2000:]}")
    report = json.loads(out.stdout)
    return {"files_per_s": report["files_per_s"], "elapsed_s": report["elapsed_s"], "ready_s": round(ready_s, 2),
            "counts": report["counts"]}


def summary(rates: list[float]) -> Figures:
    return {"best": round(max(rates), 2), "median": round(statistics.median(rates), 2),
            "runs": [round(r, 2) for r in rates]}


def run_bench(source: Path, repeat: int, copies: int, logs: Path) -> Figures:
    folder = logs / "drops"
    folder.mkdir()
    files = copy_drops(source, folder, copies)
    if not files:
        raise SystemExit(f"no *.txt drop files in {source}")
    naive_rates: list[float] = []
    runs: dict[int, list[Figures]] = {n: [] for n in WORKER_COUNTS}
    with database(f"newsflow_bench_{os.getpid()}_naive") as url:
        for run in range(repeat):  # interleaved, so a noisy moment on the machine hits every configuration
            naive_rates.append(naive_once(files, url))
            for workers in WORKER_COUNTS:
                runs[workers].append(pipeline_once(folder, workers, run, logs))
    redis.Redis.from_url(BROKER_URL).flushdb()
    naive = summary(naive_rates)
    pipeline = {str(n): summary([r["files_per_s"] for r in rs]) | {"details": rs} for n, rs in runs.items()}
    return {"files": len(files), "source": str(source), "repeat": repeat, "naive": naive, "pipeline": pipeline}


def format_table(result: Figures) -> str:
    naive, pipeline = result["naive"], result["pipeline"]
    rows = [("naive single process (read, parse, INSERT per file)", naive)]
    rows += [(f"newsflow ingest --wait, {n} worker process{'es' if n > 1 else ''}", pipeline[str(n)])
             for n in WORKER_COUNTS]
    lines = [f"files: {result['files']} (versions of {Path(result['source']).name}), {result['repeat']} runs each; "
             "files/s, best and median of the runs; ratios against the naive best and median",
             f"{'':<54}{'best':>9}{'median':>9}{'ratio best':>12}{'ratio median':>14}"]
    lines += [f"{label + ':':<54}{s['best']:>9.1f}{s['median']:>9.1f}{s['best'] / naive['best']:>11.2f}x"
              f"{s['median'] / naive['median']:>13.2f}x" for label, s in rows]
    for n in WORKER_COUNTS:
        for d in pipeline[str(n)]["details"]:
            lines.append(f"  {n} worker(s): {d['files_per_s']:>7.1f} files/s in {d['elapsed_s']:.3f} s "
                         f"(services ready after {d['ready_s']:.2f} s) {d['counts']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--files", type=Path, default=DEFAULT_FILES, help="folder of *.txt drop files")
    parser.add_argument("--copies", type=int, default=10, help="distinct versions of each file (default 10)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--logs", type=Path, help="keep the services' logs (and drop copies) in this folder")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally blocks) on kill too
    with ExitStack() as stack:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=False)
            logs = args.logs.absolute()
        else:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="newsflow-bench-")))
        result = run_bench(args.files, max(1, args.repeat), max(1, args.copies), logs)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


if __name__ == "__main__":
    main()
