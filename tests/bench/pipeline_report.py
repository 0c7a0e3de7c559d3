"""bench_pipeline's checks of each run's outcome, its medians and ratios, and the printed tables."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common
import psutil
import psycopg
import redis
from corpus import Corpus

from shared.audit import CHECKS
from shared.queues import Queue

Figures = dict[str, Any]
TARGETS = (("w2", "datasketch", 1.0, "without enrichment, 2 worker processes / datasketch baseline"),
           ("enrich", "enrichment", 1.8, "with enrichment / enrichment baseline"))
STAGES = (("parse", "parse (worker processes)"), ("store", "store (storage process)"),
          ("enrich", "enrich (enricher processes)"), ("postgres", "PostgreSQL backends of the run's database"),
          ("redis", "redis-server (all its databases)"))


def pipeline_checks(conn: psycopg.Connection, corpus: Corpus) -> Figures:
    """What the run left in PostgreSQL and the broker, beside what the corpus says a correct run leaves."""
    statuses = dict(conn.execute("SELECT status::text, count(*) FROM drops GROUP BY status").fetchall())
    near_pairs = conn.execute("SELECT count(DISTINCT (least(article_id, other_id), greatest(article_id, other_id))) "
                              "FROM article_links").fetchone()[0]
    unenriched = conn.execute("SELECT count(*) FROM articles WHERE enrichment_version IS NULL").fetchone()[0]
    audit_failed = [check.name for check in CHECKS if conn.execute(check.sql).fetchone() is not None]
    broker = redis.Redis.from_url(common.BROKER_URL)
    enrich_keys = list(broker.scan_iter(f"{Queue.ENRICH.value}*"))
    enrich_queued = sum(broker.llen(key) for key in enrich_keys)
    enrich_bytes = sum(broker.memory_usage(key) or 0 for key in enrich_keys)
    found = {"stored": statuses.get("stored", 0), "duplicate": statuses.get("duplicate", 0),
             "near_pairs": near_pairs}
    deviations = [f"{key} {found[key]} (expected {want})" for key, want in corpus.expected().items()
                  if found[key] != want]
    deviations += [f"{status} {n}" for status, n in statuses.items() if status not in ("stored", "duplicate")]
    deviations += [f"audit check {name} failed" for name in audit_failed]
    if not common.broker_intact():
        deviations.append(f"{common.BROKER_URL} was flushed by another program during the run: figures unreliable")
    return found | {"statuses": statuses, "unenriched": unenriched, "enrich_messages_queued": enrich_queued,
                    "enrich_queue_bytes": enrich_bytes, "deviations": deviations}


def storage_stats(log_path: Path) -> Figures:
    """The storage service's own per-batch timings from its JSON log lines ("batch stored")."""
    batch_ms, lock_ms, drops, enriched = [], [], 0, 0
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("msg") == "batch stored":
            batch_ms.append(float(entry["batch_ms"]))
            lock_ms.append(float(entry.get("lock_held_ms") or 0.0))
            drops += int(entry.get("drops", 0))
        elif entry.get("msg") == "enrichments stored":
            enriched += int(entry.get("articles", 0))
    if not batch_ms:
        return {}
    return {"batches": len(batch_ms), "drops": drops, "enrichments_stored": enriched,
            "batch_ms_median": round(statistics.median(batch_ms), 2),
            "batch_ms_p95": round(percentile(batch_ms, 95), 2),
            "lock_held_ms_median": round(statistics.median(lock_ms), 2),
            "handler_ms_per_drop": round(sum(batch_ms) / max(1, drops), 3)}


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def per_core(files: int, cpu_s: float | None) -> float | None:
    return round(files / cpu_s, 1) if cpu_s else None


def capacity(figures: Figures, files: int, cores: int) -> Figures:
    """Files per CPU-second of each stage (its capacity per core), the cores the run used, its CPU per file, and
    the files/s that CPU alone would allow (all cores busy for the pipeline, one for a one-process baseline)."""
    cpu, elapsed = figures["cpu_s"], figures["elapsed_s"]
    if "script" in cpu:  # a baseline: one script process and its PostgreSQL backend
        total = cpu["script"] + cpu["postgres_backend"]
        return {"script": per_core(files, cpu["script"]), "postgres": per_core(files, cpu["postgres_backend"]),
                "cores_used": round(total / elapsed, 2), "cpu_ms_per_file": round(1000 * total / files, 3),
                "ceiling": per_core(files, total), "machine_busy_cores": figures.get("machine_busy_cores")}
    stored = figures["checks"]["stored"]
    ours = sum(cpu.get(stage, 0.0) for stage, _ in STAGES)
    total = ours + max(0.0, cpu["ingest"] - figures["ingest_fixed_cpu_s"])
    return {"parse": per_core(files, cpu.get("parse")), "store": per_core(files, cpu.get("store")),
            "enrich": per_core(stored, cpu.get("enrich")), "postgres": per_core(files, cpu.get("postgres")),
            "redis": per_core(files, cpu.get("redis")), "cores_used": round(ours / elapsed, 2),
            "ingest_cpu_s": cpu["ingest"], "machine_busy_cores": round(cpu["machine"] / figures["window_s"], 2),
            "cpu_ms_per_file": round(1000 * total / files, 3), "ceiling": per_core(files * cores, total)}


def median_of(rows: list[Figures]) -> Figures:
    keys = {k for row in rows for k, v in row.items() if v is not None}
    return {k: round(statistics.median(row[k] for row in rows if row.get(k) is not None), 2) for k in sorted(keys)}


def summarise(runs: dict[str, list[Figures]], labels: dict[str, tuple[str, str]], corpus: Corpus, enrich_corpus: Corpus,
              args: argparse.Namespace) -> Figures:
    labels = {"datasketch": ("datasketch baseline (one process)", "datasketch baseline"),
              "enrichment": ("enrichment baseline (one process)", "enrichment baseline")} | labels
    results, cores = {}, psutil.cpu_count() or 1
    for key, rows in runs.items():
        if not rows:
            continue
        files = (enrich_corpus if key in ("enrichment", "enrich") else corpus).drops
        rates = [r["files_per_s"] for r in rows]
        results[key] = {"label": labels[key][0], "short": labels[key][1], "median": round(statistics.median(rates), 2),
                        "runs": rates, "capacity": median_of([capacity(r, files, cores) for r in rows]),
                        "details": rows}
    ratios = {}
    for key, base, target, label in TARGETS:
        if key in results and base in results:
            ratio = results[key]["median"] / results[base]["median"]
            ratios[key] = {"label": label, "ratio": round(ratio, 3), "target": target, "met": ratio >= target}
    result = {"corpus": corpus_figures(corpus), "repeat": args.repeat, "cores": cores,
              "results": results, "ratios": ratios}
    if enrich_corpus is not corpus:
        result["enrich_corpus"] = corpus_figures(enrich_corpus)
    return result


def corpus_figures(corpus: Corpus) -> Figures:
    return {"composition": corpus.composition(), "detail": corpus.detail(), "expected": corpus.expected()}


def fmt(value: float | None, width: int = 9) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def format_throughput(result: Figures) -> list[str]:
    lines = [f"End to end, files/s: median of {result['repeat']} interleaved rounds (each round's figure after it)",
             f"  {'':<66}{'median':>9}  rounds"]
    for item in result["results"].values():
        rounds = " ".join(f"{r:.1f}" for r in item["runs"])
        lines.append(f"  {item['label'] + ':':<66}{item['median']:>9.1f}  {rounds}")
    for item in result["ratios"].values():
        verdict = "met" if item["met"] else "NOT met"
        lines.append(f"  ratio {item['label']}: {item['ratio']:.2f}x (target >= {item['target']}x: {verdict})")
    return lines


def format_capacity(result: Figures) -> list[str]:
    lines = ["", "Capacity per core: files per CPU-second of each stage's processes (enrich: articles); cores used: "
                 f"their CPU / elapsed (of {result['cores']}; machine: every process on it); ms/file: CPU of all the "
                 "run's processes (ingest's start-up left out); ceiling: files/s that CPU allows on every core (the "
                 "pipeline) or on one (a baseline). Medians.",
             f"  {'':<30}{'parse':>8}{'store':>8}{'enrich':>8}{'pg':>8}{'redis':>8}{'cores':>7}{'machine':>8}"
             f"{'ms/file':>9}{'ceiling':>9}"]
    for key, item in result["results"].items():
        c = item["capacity"]
        tail = f"{c['cpu_ms_per_file']:>9.2f}{fmt(c['ceiling'])}"
        if key in ("datasketch", "enrichment"):
            lines.append(f"  {item['short']:<30}{fmt(c.get('script'), 8)} (whole script){'':>10}"
                         f"{fmt(c.get('postgres'), 8)}{'':>8}{c['cores_used']:>7.2f}"
                         f"{c.get('machine_busy_cores', 0.0):>8.2f}{tail}")
            continue
        lines.append(f"  {item['short']:<30}{fmt(c.get('parse'), 8)}{fmt(c.get('store'), 8)}"
                     f"{fmt(c.get('enrich'), 8)}{fmt(c.get('postgres'), 8)}{fmt(c.get('redis'), 8)}"
                     f"{c['cores_used']:>7.2f}{c.get('machine_busy_cores', 0.0):>8.2f}{tail}")
    return lines


def baseline_lines(key: str, number: int, d: Figures) -> list[str]:
    counts = d["counts"]
    return [f"  {key} round {number}: stored {counts['stored']}, duplicate {counts['duplicate']}, "
            f"near-duplicates found for {d['near_found']}; CPU s {d['cpu_s']}"]


def pipeline_lines(key: str, number: int, d: Figures) -> list[str]:
    c, s, cpu, main = d["checks"], d["storage"], d["cpu_s"], d["cpu_main_s"]
    verdict = "as expected, audit clean" if not c["deviations"] else "; ".join(c["deviations"])
    waited = f", then enrichment polled {d['enrich_wait_s']:.2f} s" if d.get("enrich_wait_s") is not None else ""
    lines = [f"  {key} round {number}: stored {c['stored']}, duplicate {c['duplicate']}, near pairs "
             f"{c['near_pairs']}: {verdict}",
             f"      unenriched {c['unenriched']}, enrichment messages left {c['enrich_messages_queued']} "
             f"({c['enrich_queue_bytes'] / 1e6:.1f} MB in Redis); ingest {d['ingest_elapsed_s']:.2f} s (its process "
             f"{d['ingest_wall_s']:.2f} s){waited}; services answered after {d['ready_s']} s, idle after "
             f"{d['idle_s']} s more",
             "      CPU s: " + ", ".join(f"{stage} {cpu[stage]:.1f} (Celery main process {main[stage]:.1f})"
                                      for stage in main)
             + f", PostgreSQL {cpu['postgres']:.1f} (all its processes {cpu['postgres_all']:.1f}), "
               f"redis {cpu['redis']:.1f}, ingest command {cpu['ingest']:.1f} (with its start-up)"]
    if s:
        lines.append(f"      storage: {s['batches']} batches, batch median {s['batch_ms_median']} ms, p95 "
                     f"{s['batch_ms_p95']} ms, index lock held median {s['lock_held_ms_median']} ms, "
                     f"{s['handler_ms_per_drop']} ms a drop in its handler; enrichments stored "
                     f"{s['enrichments_stored']}")
    return lines


def format_checks(result: Figures) -> list[str]:
    lines = ["", "Each run (checked after its clock stopped):"]
    for key, item in result["results"].items():
        for number, d in enumerate(item["details"], 1):
            lines += pipeline_lines(key, number, d) if "checks" in d else baseline_lines(key, number, d)
    return lines


def format_report(result: Figures) -> str:
    lines = [result["corpus"]["composition"], result["corpus"]["detail"]]
    if "enrich_corpus" in result:
        lines.append(f"enrichment runs: {result['enrich_corpus']['composition']}")
    lines += ["(figures move while other work shares this machine's cores: compare within one run, not across runs)",
              ""]
    lines += format_throughput(result) + format_capacity(result) + format_checks(result)
    lines.append(f"\nbench wall time {result.get('bench_wall_s', 0):.0f} s")
    return "\n".join(lines)
