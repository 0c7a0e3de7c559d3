"""The watcher's targets (SPEC 9): a backlog taken at 2k files/s or more with bounded memory, and a file
renamed into a drop folder queryable within 1 s at the 95th percentile at half of capacity.

Run: python tests/bench/bench_watcher.py [backlog|latency|all|deployed] [--files N] [--rate R] [--duration S]
                                        [--set KEY=VALUE]... [--json]

Servers as in watcher_rig.py (PostgreSQL 127.0.0.1:5432, Redis db 12); a fresh database and temporary
folder per run, removed on the way out (Ctrl-C and SIGTERM too). Drop files are distinct versions of
tests/data/wikinews/*.txt, few of them near-duplicates of each other (watcher_rig.Corpus).

backlog: N files (default 100,000) are written, then `newsflow watcher` starts on the folder. Figure: files
recorded in the ledger per second, from the watcher's start (process start: imports, loading the ledger and
the walk count) and from its first drop row, to the last row. No worker runs, so this is the watcher's own
intake, and its back-pressure is lifted for the run: NEWSFLOW_PIPELINE__MAX_UNFINISHED above N,
NEWSFLOW_PIPELINE__LEASE_S at an hour (it pauses, as it should, while the parse queue is over its limit or
queued drops have waited half their lease; the `deployed` phase shows it paced by the pipeline). Every drop
id is then checked to be in a message on the parse queue. Memory: the watcher's peak RSS (sampled every 20 ms)
against its RSS watching an empty folder. Then a second watcher starts over the same folder and ledger
(restart): it must take nothing; the time to load the ledger and walk the folder is printed.

latency: worker (--concurrency 2), storage and watcher with default settings. Unless --rate is given,
capacity is measured first (a burst of files renamed in at once, first rename to last drop finished) and
the rate is half of it. Files are then written under a temporary name and renamed in at that steady rate
for --duration seconds; a file's latency runs from the end of its rename to its drop ending `stored` or
`duplicate`, as seen by a client polling the ledger every POLL_S (committed, queryable), and as its
`finished_at` (the storing transaction's start), and the watcher's part (to its `discovered_at`). All
are this machine's wall clock.

deployed (not in `all`): the backlog with worker and storage running and every setting at its default:
when the watcher recorded the last file (paced by back-pressure), when the last drop ended, and how many
drops the reconciler re-sent (their lease ran out while they waited in the queue) or failed.

--set KEY=VALUE gives every service a setting (NEWSFLOW_KEY), e.g. --set pipeline__batch_wait_s=0.1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from watcher_rig import (
    BROKER_URL,
    POLL_S,
    Corpus,
    LedgerPoller,
    RssSampler,
    bench_env,
    database,
    mib,
    newsflow,
    percentiles,
    service,
    start_pipeline,
    wait_log,
)

from shared.queues import Queue

SETTLE_S = 2.0  # the default NEWSFLOW_WATCHER__SETTLE_S: older files are complete when the walk meets them
TAKE_TIMEOUT_S = 900.0
IDLE_RSS_S = 3.0  # how long the watcher of an empty folder runs before its RSS is read
Figures = dict[str, Any]


def flush_broker() -> None:
    redis.Redis.from_url(BROKER_URL).flushdb()


def idle_rss(env: dict[str, str], logs: Path) -> int:
    """The watcher's RSS IDLE_RSS_S after it started watching an empty folder."""
    empty = logs / "empty"
    empty.mkdir(exist_ok=True)
    with service(newsflow("watcher", "--drop", str(empty)), env, logs / "watcher-empty.log") as proc:
        wait_log(proc, logs / "watcher-empty.log", "watching")
        time.sleep(IDLE_RSS_S)
        return psutil.Process(proc.pid).memory_info().rss


def ledger_progress(conn: psycopg.Connection) -> tuple[int, float, float]:
    row = conn.execute("SELECT count(*), extract(epoch FROM min(discovered_at)), "
                       "extract(epoch FROM max(discovered_at)) FROM drops").fetchone()
    assert row is not None
    return int(row[0]), float(row[1] or 0), float(row[2] or 0)


def queued_ids() -> list[int]:
    """Every drop id in the messages waiting on the parse queue (kombu's Redis list of JSON envelopes)."""
    ids: list[int] = []
    for raw in redis.Redis.from_url(BROKER_URL).lrange(Queue.PARSE.value, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        ids += json.loads(body)[1]["drop_ids"]
    return ids


def take_backlog(env: dict[str, str], folder: Path, files: int, logs: Path) -> Figures:
    """Start the watcher on the backlog, wait until every file is in the ledger; check the messages."""
    log_path = logs / "watcher-backlog.log"
    with psycopg.connect(env["NEWSFLOW_DATABASE_URL"], autocommit=True) as conn:
        start, deadline = time.time(), time.monotonic() + TAKE_TIMEOUT_S
        with service(newsflow("watcher", "--drop", str(folder)), env, log_path) as proc:
            sampler = RssSampler(proc.pid)
            sampler.start()
            while (progress := ledger_progress(conn))[0] < files:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"watcher took {progress[0]} of {files} files; see {log_path}")
                time.sleep(0.1)
            time.sleep(0.5)  # the last message is sent just after the last commit
            cpu = sum(psutil.Process(proc.pid).cpu_times()[:2])
            sampler.stop()
        queued = {r[0] for r in conn.execute("SELECT id FROM drops WHERE status = 'queued'")}
    count, first, last = progress
    ids = queued_ids()
    if set(ids) != queued or len(queued) != files:
        raise RuntimeError(f"{files} files: {len(queued)} queued drops, {len(set(ids))} distinct ids in messages "
                           f"({len(set(ids) - queued)} unknown)")
    return {"files": count, "startup_s": round(first - start, 2), "last_row_s": round(last - start, 2),
            "files_per_s_from_start": round(count / (last - start), 1),
            "files_per_s_from_first_row": round(count / max(last - first, 1e-9), 1),
            "cpu_s": round(cpu, 2), "cpu_ms_per_1k_files": round(1e6 * cpu / count, 1),
            "peak_rss_mib": mib(sampler.peak), "end_rss_mib": mib(sampler.last),
            "messages": redis.Redis.from_url(BROKER_URL).llen(Queue.PARSE.value), "resent": len(ids) - len(queued)}


def restart(env: dict[str, str], folder: Path, files: int, logs: Path) -> Figures:
    """A second watcher over the same folder and ledger: it loads the ledger, walks every file, takes none."""
    log_path = logs / "watcher-restart.log"
    start = time.time()
    with service(newsflow("watcher", "--drop", str(folder)), env, log_path) as proc:
        sampler = RssSampler(proc.pid)
        sampler.start()
        line = wait_log(proc, log_path, "walked the drop folders", timeout_s=TAKE_TIMEOUT_S)
        walked_s = time.time() - start
        time.sleep(1.0)  # anything it would take, it takes now
        sampler.stop()
    with psycopg.connect(env["NEWSFLOW_DATABASE_URL"]) as conn:
        new = ledger_progress(conn)[0] - files
    walk = dict(re.findall(r"(\w+)=([\d.]+)", line))
    return {"restart_walked_s": round(walked_s, 2), "restart_walk_s": float(walk["seconds"]),
            "restart_walk_cpu_s": float(walk["cpu_s"]), "restart_new_drops": new,
            "restart_peak_rss_mib": mib(sampler.peak)}


def backlog_once(corpus: Corpus, files: int, run: int, logs: Path, settings: dict[str, str], *,
                 restart_too: bool = True) -> Figures:
    folder = logs / "backlog"
    folder.mkdir()
    start = time.monotonic()
    corpus.write(folder, range(files))
    written = time.monotonic()
    flush_broker()
    limit = files + 1000  # over the whole backlog: never paused
    try:
        with database(f"newsflow_bench_watcher_{os.getpid()}_b{run}") as url:
            lifted = {"pipeline__max_unfinished": str(limit)}
            env = bench_env(url, **(settings | lifted))
            rss_empty = idle_rss(env, logs)
            time.sleep(max(0.0, SETTLE_S + 0.5 - (time.monotonic() - written)))
            figures = take_backlog(env, folder, files, logs)
            flush_broker()
            if restart_too:
                figures |= restart(env, folder, files, logs)
    finally:
        flush_broker()
        shutil.rmtree(folder)
    growth = round(figures["peak_rss_mib"] - mib(rss_empty), 1)
    return figures | {"written_s": round(written - start, 2), "max_unfinished": limit,
                      "idle_rss_mib": mib(rss_empty), "rss_growth_mib": growth}


def deployed_once(corpus: Corpus, files: int, logs: Path, settings: dict[str, str]) -> Figures:
    """The backlog as deployed: worker and storage running, settings at their defaults (or --set)."""
    folder = logs / "deployed"
    folder.mkdir()
    corpus.write(folder, range(files))
    written = time.monotonic()
    flush_broker()
    try:
        with database(f"newsflow_bench_watcher_{os.getpid()}_dep") as url, ExitStack() as stack:
            env = bench_env(url, **settings)
            start_pipeline(stack, env, logs, "dep")
            time.sleep(max(0.0, SETTLE_S + 0.5 - (time.monotonic() - written)))
            start = time.time()
            watcher = stack.enter_context(service(newsflow("watcher", "--drop", str(folder)), env,
                                                  logs / "watcher-deployed.log"))
            recorded_s, done_s, row = wait_terminal(url, files, start, watcher)
    finally:
        flush_broker()
        shutil.rmtree(folder)
    return {"files": files, "recorded_s": round(recorded_s, 1), "done_s": round(done_s, 1),
            "recorded_per_s": round(files / recorded_s, 1), "done_per_s": round(files / done_s, 1),
            "resent_drops": row[0], "max_deliveries": row[1], "failed": row[2], "settings": settings}


def wait_terminal(url: str, files: int, start: float, watcher: subprocess.Popen[bytes]
                  ) -> tuple[float, float, tuple[int, int, int]]:
    """Seconds from start until every file was recorded, and until every drop was terminal; then how many
    drops the reconciler re-sent after a pickup, the most deliveries (pickups) of one, and how many failed."""
    recorded_s, deadline = 0.0, time.monotonic() + TAKE_TIMEOUT_S
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            recorded, done = conn.execute("SELECT count(*), count(*) FILTER (WHERE status <> 'queued') FROM drops"
                                          ).fetchone() or (0, 0)
            recorded_s = recorded_s or (time.time() - start if recorded >= files else 0.0)
            if done >= files:
                break
            if watcher.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {files} drops terminal ({recorded} recorded)")
            time.sleep(0.5)
        done_s = time.time() - start
        row = conn.execute("SELECT count(*) FILTER (WHERE retries > 0), coalesce(max(deliveries), 0), "
                           "count(*) FILTER (WHERE status = 'failed') FROM drops").fetchone()
    assert row is not None
    return recorded_s, done_s, (int(row[0]), int(row[1]), int(row[2]))


def capacity(folder: Path, corpus: Corpus, poller: LedgerPoller, burst: int) -> float:
    """Files/s end to end: `burst` files renamed in at once, first rename to last drop finished."""
    for k in range(burst):
        (folder / (corpus.name(k) + ".tmp")).write_bytes(corpus.data(k))
    start = time.time()
    paths = [str(folder / corpus.name(k)) for k in range(burst)]
    for k, path in enumerate(paths):
        os.rename(folder / (corpus.name(k) + ".tmp"), path)
    poller.wait_for(paths, TAKE_TIMEOUT_S)
    return burst / (max(poller.seen[p][1] for p in paths) - start)


def stream(folder: Path, corpus: Corpus, poller: LedgerPoller, rate: float, count: int, first_k: int) -> Figures:
    """Rename `count` files in at `rate` files/s; the latency of each, rename to finished."""
    renamed: dict[str, float] = {}
    start = time.time() + 0.2
    for i in range(count):
        if (delay := start + i / rate - time.time()) > 0:
            time.sleep(delay)
        path, at = corpus.rename_in(folder, first_k + i)
        renamed[path] = at
    written_s = time.time() - start
    poller.wait_for(list(renamed), 120.0)
    return {"files": count, "written_s": round(written_s, 2), "achieved_rate": round(count / written_s, 1),
            "queryable": percentiles([poller.seen[p][0] - t for p, t in renamed.items()]),
            "finished_at": percentiles([poller.seen[p][1] - t for p, t in renamed.items()]),
            "discovered_at": percentiles([poller.seen[p][2] - t for p, t in renamed.items()])}


def latency_once(corpus: Corpus, rate: float | None, duration: float, burst: int, logs: Path,
                 settings: dict[str, str]) -> Figures:
    folder = logs / "latency"
    folder.mkdir()
    flush_broker()
    try:
        with database(f"newsflow_bench_watcher_{os.getpid()}_lat") as url, ExitStack() as stack:
            env = bench_env(url, **settings)
            start_pipeline(stack, env, logs, "lat")
            watcher = stack.enter_context(service(newsflow("watcher", "--drop", str(folder)), env,
                                                  logs / "watcher-latency.log"))
            wait_log(watcher, logs / "watcher-latency.log", "watching")
            poller = LedgerPoller(url)
            poller.start()
            stack.callback(poller.done.set)
            measured = capacity(folder, corpus, poller, burst) if rate is None else None
            use = rate or measured / 2  # type: ignore[operator]
            figures = stream(folder, corpus, poller, use, max(1, int(use * duration)), burst)
    finally:
        flush_broker()
        shutil.rmtree(folder)
    return {"capacity_files_per_s": measured and round(measured, 1), "burst": burst if measured else None,
            "rate": round(use, 1), "rate_source": "given" if rate else "half the measured capacity",
            "settings": settings} | figures


def format_backlog(r: Figures) -> list[str]:
    return [
        f"backlog: {r['files']} files (written in {r['written_s']:.1f} s); the watcher alone (its own intake: no "
        f"worker runs, so back-pressure is lifted: max_unfinished {r['max_unfinished']} drops)",
        f"  recorded in the ledger and enqueued: {r['files_per_s_from_start']:.0f} files/s from watcher start "
        f"({r['last_row_s']:.1f} s; first row after {r['startup_s']:.2f} s), "
        f"{r['files_per_s_from_first_row']:.0f} files/s from the first row",
        f"  {r['messages']} messages on the parse queue, every drop id in one ({r['resent']} sent again by the "
        f"reconciler); watcher CPU {r['cpu_s']:.1f} s ({r['cpu_ms_per_1k_files']:.0f} ms per 1k files)",
        f"  watcher RSS: {r['idle_rss_mib']:.1f} MiB watching an empty folder, peak {r['peak_rss_mib']:.1f} MiB "
        f"with the backlog (+{r['rss_growth_mib']:.1f} MiB), {r['end_rss_mib']:.1f} MiB at the end",
    ] + ([
        f"  restart over the {r['files']} known files: ledger loaded and folder walked {r['restart_walked_s']:.2f} s "
        f"after start (walk {r['restart_walk_s']:.2f} s, {r['restart_walk_cpu_s']:.2f} s CPU), "
        f"{r['restart_new_drops']} new drops, peak RSS {r['restart_peak_rss_mib']:.1f} MiB",
    ] if "restart_walked_s" in r else [])


def format_deployed(r: Figures) -> list[str]:
    given = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
    return [f"deployed: {r['files']} files, watcher + worker (--concurrency 2) + storage, settings: {given}",
            f"  all recorded by the watcher after {r['recorded_s']:.1f} s ({r['recorded_per_s']:.0f} files/s, as "
            f"back-pressure allowed), all terminal after {r['done_s']:.1f} s ({r['done_per_s']:.0f} files/s)",
            f"  re-sent by the reconciler: {r['resent_drops']} drops (at most {r['max_deliveries']} deliveries of "
            f"one); failed: {r['failed']}"]


def format_latency(r: Figures) -> list[str]:
    given = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
    lines = [f"latency: watcher + worker (--concurrency 2) + storage, settings: {given}"]
    if r["capacity_files_per_s"]:
        lines.append(f"  capacity: {r['capacity_files_per_s']:.0f} files/s end to end ({r['burst']} files "
                     "renamed in at once, first rename to last finished)")
    lines.append(f"  rate: {r['rate']:.1f} files/s ({r['rate_source']}); {r['files']} files renamed in over "
                 f"{r['written_s']:.1f} s (achieved {r['achieved_rate']:.1f} files/s)")
    for key, label in (("queryable", f"seen stored by a client polling every {POLL_S * 1000:.0f} ms"),
                       ("finished_at", "drop's finished_at (transaction start)"),
                       ("discovered_at", "drop recorded by the watcher (discovered_at)")):
        p = r[key]
        lines.append(f"  rename -> {label}: p50 {p['p50']:.3f} s, p95 {p['p95']:.3f} s, p99 {p['p99']:.3f} s, "
                     f"max {p['max']:.3f} s")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", nargs="?", choices=("backlog", "latency", "all", "deployed"), default="all",
                        help="all: backlog then latency; deployed: the backlog with worker and storage running")
    parser.add_argument("--files", type=int, default=100_000, help="backlog files (default 100,000)")
    parser.add_argument("--repeat", type=int, default=1, help="backlog runs (default 1)")
    parser.add_argument("--no-restart", action="store_true", help="backlog: skip the restart over the backlog")
    parser.add_argument("--rate", type=float, help="latency: files/s (default: half the measured capacity)")
    parser.add_argument("--burst", type=int, default=3000, help="latency: files of the capacity burst")
    parser.add_argument("--duration", type=float, default=30.0, help="latency: seconds of steady writing")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--logs", type=Path, help="keep the services' logs in this (new) folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every service, e.g. pipeline__batch_wait_s=0.1 (NEWSFLOW_ prefix implied)")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (finally blocks) on kill too
    corpus, result = Corpus(), {}
    with ExitStack() as stack:
        if args.logs:
            args.logs.mkdir(parents=True)
            logs = args.logs.absolute()
        else:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="newsflow-bench-watcher-")))
        if args.phase in ("backlog", "all"):
            result["backlog"] = [backlog_once(corpus, args.files, run, logs, settings, restart_too=not args.no_restart)
                                 for run in range(max(1, args.repeat))]
        if args.phase in ("latency", "all"):
            result["latency"] = latency_once(corpus, args.rate, args.duration, args.burst, logs, settings)
        if args.phase == "deployed":
            result["deployed"] = deployed_once(corpus, args.files, logs, settings)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    lines = [line for run in result.get("backlog", []) for line in format_backlog(run)]
    lines += format_latency(result["latency"]) if "latency" in result else []
    print("\n".join(lines + (format_deployed(result["deployed"]) if "deployed" in result else [])))


if __name__ == "__main__":
    main()
