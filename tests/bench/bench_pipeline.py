"""End-to-end throughput of the pipeline beside the one-process baselines, and each stage's capacity per core.

Run: python tests/bench/bench_pipeline.py [--repeat 3] [--drops 3200] [--enrich-drops N] [--workers 1,2,4]
                                          [--seed N] [--json] [--logs DIR] [--quick]

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) and Redis at 127.0.0.1:6379 (db 13, or
NEWSFLOW_BENCH_BROKER_URL, is flushed). The corpus (tests/bench/corpus.py) is built once; every pipeline run
gets a fresh database and an empty broker. The services (`newsflow worker --concurrency N`, `newsflow storage`,
and for the enrichment runs `newsflow enricher --concurrency 2`) are started, pinged until they answer and left to
go idle (models loaded) before `newsflow ingest DIR --wait --workers 0 --json` runs, so start-up is
not timed. Pipeline figures are ingest's own: first enqueue to last terminal state. `ingest --workers 0`
does not wait for enrichment, so the enrichment runs then poll the articles table until every article
is enriched, and add to ingest's figure the time from the last drop's end to the last enrichment
(both PostgreSQL timestamps). The baselines (tests/bench/baselines.py) run as their own processes on
the same files. Runs are interleaved: per round, the datasketch baseline, the pipeline with each worker
count, the enrichment baseline, the pipeline with the enricher; medians of the rounds are compared.

CPU: each service's process tree, the ingest command, PostgreSQL's backends of the run's database and
redis-server are sampled with psutil every 0.5 s through the run; files per CPU-second of a stage is
its capacity per core.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common
import psutil
import psycopg
from common import (
    CpuMeter,
    broker_clients,
    database,
    exit_on_sigterm,
    flush_broker,
    named_processes,
    newsflow,
    postgres_processes,
    service,
    service_env,
    stop,
    tree,
    wait_idle,
    wait_ready,
    workspace,
)
from corpus import DEFAULT_DROPS, DEFAULT_SEED, Corpus, build_corpus
from pipeline_report import format_report, pipeline_checks, storage_stats, summarise

BASELINES = Path(__file__).resolve().with_name("baselines.py")
WORKER_COUNTS = (1, 2, 4)
ENRICH_WORKERS = 2
ENRICHER_CONCURRENCY = 2
QUICK_DROPS = 300
RUN_TIMEOUT_S = 3600.0
ENRICH_STALL_S = 180.0
POLL_INTERVAL_S = 0.2
Figures = dict[str, Any]


@dataclass(frozen=True)
class Config:
    key: str
    workers: int
    enrichers: int  # enricher processes; 0: none runs, enrichment messages wait in the broker

    @property
    def short(self) -> str:
        workers = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        return f"{workers} + enricher x{self.enrichers}" if self.enrichers else f"{workers}, no enricher"

    @property
    def label(self) -> str:
        workers = f"{self.workers} worker process{'es' if self.workers > 1 else ''}"
        if not self.enrichers:
            return f"newsflow, {workers}, no enricher"
        return f"newsflow, {workers} + enricher x{self.enrichers}, to the last enrichment"


def run_baseline(script: str, corpus: Corpus, tag: str, ws: Path) -> Figures:
    """One run of a baseline script in its own process, on its own fresh database."""
    with database(f"newsflow_bench_{os.getpid()}_{tag}") as url, (ws / f"{tag}.log").open("wb") as log:
        before, start = psutil.cpu_times(), time.monotonic()
        out = subprocess.run([sys.executable, str(BASELINES), script, str(corpus.folder), "--database-url", url,
                              "--json"], stdout=subprocess.PIPE, stderr=log, check=False, timeout=RUN_TIMEOUT_S)
        after, wall_s = psutil.cpu_times(), time.monotonic() - start
    if out.returncode:
        raise RuntimeError(f"baseline {script} failed ({out.returncode}); see {ws / f'{tag}.log'}")
    busy_s = (sum(after) - after.idle - after.iowait) - (sum(before) - before.idle - before.iowait)
    # the script's whole life (imports, model) is in wall_s: the machine's share, not this script's
    return json.loads(out.stdout) | {"machine_busy_cores": round(busy_s / wall_s, 2)}


def start_services(stack: ExitStack, config: Config, env: dict[str, str], tag: str, ws: Path
                   ) -> dict[str, subprocess.Popen[bytes]]:
    """The services of a configuration, by stage; their Celery node names are stage-host@tag."""
    argv = {"parse": ["worker", "--concurrency", str(config.workers)], "store": ["storage"]}
    if config.enrichers:
        argv["enrich"] = ["enricher", "--concurrency", str(config.enrichers)]
    procs = {}
    for stage, args in argv.items():
        procs[stage] = stack.enter_context(service(newsflow(*args, "-n", f"{stage}-bench{os.getpid()}@{tag}"),
                                                   env, ws / f"{tag}-{args[0]}.log"))
    return procs


def run_ingest(folder: Path, env: dict[str, str], tag: str, ws: Path, procs: list[subprocess.Popen[bytes]],
               started: list[subprocess.Popen[bytes]]) -> Figures:
    """`newsflow ingest --wait --workers 0 --json`, failing fast if a service dies meanwhile."""
    report_path = ws / f"{tag}-ingest.json"
    with report_path.open("wb") as out, (ws / f"{tag}-ingest.log").open("wb") as err:
        start = time.monotonic()
        ingest = subprocess.Popen(newsflow("ingest", str(folder), "--wait", "--workers", "0", "--json"), env=env,
                                  stdout=out, stderr=err, cwd=ws, process_group=0)
        started.append(ingest)
        try:
            while ingest.poll() is None:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a service died during the run; see the logs of {tag}")
                if time.monotonic() - start > RUN_TIMEOUT_S:
                    raise RuntimeError(f"newsflow ingest did not finish in {RUN_TIMEOUT_S:.0f} s")
                time.sleep(POLL_INTERVAL_S)
        finally:
            stop(ingest)
    if ingest.returncode:
        raise RuntimeError(f"newsflow ingest failed ({ingest.returncode}); see {ws / f'{tag}-ingest.log'}")
    report = json.loads(report_path.read_text())
    return report | {"ingest_wall_s": round(time.monotonic() - start, 3)}


def wait_enriched(conn: psycopg.Connection, procs: list[subprocess.Popen[bytes]]) -> float:
    """Poll until every article has its enrichment; returns the seconds it waited."""
    start = last_change = time.monotonic()
    last_left = -1
    while True:
        left = conn.execute("SELECT count(*) FROM articles WHERE enrichment_version IS NULL").fetchone()[0]
        now = time.monotonic()
        if left == 0:
            return now - start
        if left != last_left:
            last_left, last_change = left, now
        if now - last_change > ENRICH_STALL_S:
            raise RuntimeError(f"{left} articles still not enriched after {ENRICH_STALL_S:.0f} s without progress")
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a service died while articles were being enriched")
        time.sleep(POLL_INTERVAL_S)


def enrichment_tail_s(conn: psycopg.Connection) -> float:
    """Seconds from the last drop's end to the last enrichment stored (PostgreSQL's clock for both)."""
    tail = conn.execute("SELECT extract(epoch FROM (SELECT max(enriched_at) FROM articles) "
                        "- (SELECT max(finished_at) FROM drops))").fetchone()[0]
    return max(0.0, float(tail or 0.0))


def cpu_groups(procs: dict[str, subprocess.Popen[bytes]], started: list[subprocess.Popen[bytes]], db: str
               ) -> dict[str, Any]:
    groups: dict[str, Any] = {stage: (lambda pid=proc.pid: tree(pid)) for stage, proc in procs.items()}
    groups["ingest"] = lambda: [p for proc in started for p in tree(proc.pid)]
    groups["postgres"] = lambda: postgres_processes(db)
    groups["postgres_all"] = postgres_processes
    groups["redis"] = lambda: named_processes("redis-server")
    return groups


def ingest_fixed_cpu_s(env: dict[str, str], ws: Path) -> float:
    """CPU seconds of `newsflow ingest` over an empty folder: its start-up, left out of CPU per file."""
    empty = ws / "empty"
    empty.mkdir(exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(newsflow("ingest", str(empty), "--wait", "--workers", "0", "--json"), env=env, check=True,
                   capture_output=True, cwd=ws)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)


def run_pipeline(config: Config, corpus: Corpus, run: int, ws: Path) -> Figures:
    """One pipeline run: fresh database and broker, services started and idle, then ingest timed."""
    if others := flush_broker():
        progress(f"  warning: other programs use {common.BROKER_URL} ({'; '.join(others)}): "
                 "they may take this run's messages")
    tag, db = f"{config.key}-r{run + 1}", f"newsflow_bench_{os.getpid()}_{config.key}_{run + 1}"
    with database(db) as url, ExitStack() as stack:
        env = service_env(dict(os.environ), url, NEWSFLOW_LOG_JSON="true")
        subprocess.run(newsflow("migrate"), env=env, check=True, capture_output=True, cwd=ws)
        procs = start_services(stack, config, env, tag, ws)
        names = [f"{stage}-bench{os.getpid()}@{tag}" for stage in procs]
        figures: Figures = {"ready_s": round(wait_ready(names, list(procs.values())), 2),
                            "idle_s": round(wait_idle(list(procs.values())), 2)}
        started: list[subprocess.Popen[bytes]] = []
        with CpuMeter(cpu_groups(procs, started, db)) as meter, psycopg.connect(url, autocommit=True) as conn:
            report = run_ingest(corpus.folder, env, tag, ws, list(procs.values()), started)
            if config.enrichers:
                figures["enrich_wait_s"] = round(wait_enriched(conn, list(procs.values())), 3)
        with psycopg.connect(url, autocommit=True) as conn:
            tail_s = enrichment_tail_s(conn) if config.enrichers else 0.0
            figures["checks"] = pipeline_checks(conn, corpus)
        if others := broker_clients({p.pid for proc in procs.values() for p in tree(proc.pid)}):
            figures["checks"]["deviations"].append(f"other programs on {common.BROKER_URL}: {'; '.join(others)}")
        figures["ingest_fixed_cpu_s"] = ingest_fixed_cpu_s(env, ws)
    elapsed_s = report["elapsed_s"] + tail_s
    return figures | {
        "files_per_s": round(corpus.drops / elapsed_s, 2), "elapsed_s": round(elapsed_s, 3),
        "ingest_elapsed_s": report["elapsed_s"], "ingest_wall_s": report["ingest_wall_s"], "counts": report["counts"],
        "cpu_s": meter.seconds(), "window_s": round(meter.wall_s, 3),
        "cpu_main_s": {stage: meter.by_pid(stage).get(proc.pid, 0.0) for stage, proc in procs.items()},
        "storage": storage_stats(ws / f"{tag}-storage.log")}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_bench(args: argparse.Namespace, ws: Path) -> Figures:
    (ws / "drops").mkdir()
    corpus = build_corpus(ws / "drops", args.drops, seed=args.seed)
    progress(corpus.composition())
    enrich_corpus = corpus
    if args.enrich_drops and args.enrich_drops != args.drops:
        (ws / "drops-enrich").mkdir()
        enrich_corpus = build_corpus(ws / "drops-enrich", args.enrich_drops, seed=args.seed)
        progress(f"enrichment runs: {enrich_corpus.composition()}")
    configs = [Config(f"w{n}", n, 0) for n in args.workers]
    enrich = Config("enrich", ENRICH_WORKERS, ENRICHER_CONCURRENCY)
    steps: list[tuple[str, Corpus, Config | None]] = [("datasketch", corpus, None)]
    steps += [(c.key, corpus, c) for c in configs]
    if not args.no_enrichment:
        steps += [("enrichment", enrich_corpus, None), (enrich.key, enrich_corpus, enrich)]
    runs: dict[str, list[Figures]] = {key: [] for key, _, _ in steps}
    for run in range(args.repeat):
        for key, files, config in steps:
            if config is None:
                figures = run_baseline(key, files, f"{key}-r{run + 1}", ws)
            else:
                figures = run_pipeline(config, files, run, ws)
            runs[key].append(figures)
            progress(f"  round {run + 1}/{args.repeat} {key:<11} {figures['files_per_s']:8.1f} files/s "
                     f"in {figures['elapsed_s']:7.2f} s")
    flush_broker()
    labels = {c.key: (c.label, c.short) for c in [*configs, enrich]}
    return summarise(runs, labels, corpus, enrich_corpus, args)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3); medians are printed")
    parser.add_argument("--drops", type=int, default=DEFAULT_DROPS, help=f"corpus size (default {DEFAULT_DROPS})")
    parser.add_argument("--enrich-drops", type=int, help="corpus size for the enrichment runs (default: --drops)")
    parser.add_argument("--workers", default=",".join(map(str, WORKER_COUNTS)),
                        help="worker process counts without enrichment (default 1,2,4)")
    parser.add_argument("--no-enrichment", action="store_true", help="skip the enrichment baseline and runs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="corpus seed")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    parser.add_argument("--logs", type=Path,
                        help="keep the services' logs, the corpus and figures.json in this new folder")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_DROPS} drops, one round, 2 worker processes")
    args = parser.parse_args(argv)
    args.workers = sorted({int(n) for n in str(args.workers).split(",")})
    if args.quick:
        args.drops, args.repeat, args.workers = QUICK_DROPS, 1, [2]
    args.repeat = max(1, args.repeat)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    exit_on_sigterm()
    start = time.monotonic()
    with workspace(args.logs, "newsflow-bench-") as ws:
        result = run_bench(args, ws)
        result["bench_wall_s"] = round(time.monotonic() - start, 1)
        (ws / "figures.json").write_text(json.dumps(result, indent=2))  # kept with the logs when --logs is given
    print(json.dumps(result, indent=2) if args.json else format_report(result))


if __name__ == "__main__":
    main()
