"""The ledger view as Prometheus metrics (SPEC section 7), exported once for the whole system by the api:
computed from the status object at each scrape, so it is exact with any number of consumers, even none.
Labels stay bounded: stages, statuses, queues, and the 50 most active sources of the last 30 days."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from shared.status import Status

TOP_SOURCES = 50


def ledger_metrics(status: Status) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    stage = ("stage",)
    depth = Gauge("newsflow_queue_depth", "Messages waiting in the broker, per stage", stage, registry=registry)
    unfinished = Gauge("newsflow_unfinished", "Ledger items sent and not done, per stage", stage, registry=registry)
    oldest = Gauge("newsflow_oldest_unfinished_age_seconds", "Age of the oldest unfinished item, per stage", stage,
                   registry=registry)
    consumers = Gauge("newsflow_stage_consumers", "Consumer processes heard from, per stage", stage,
                      registry=registry)
    celery_length = Gauge("celery_queue_length", "Messages in a queue (celery-exporter's meaning)", ("queue_name",),
                          registry=registry)
    for name, s in status["stages"].items():
        if s["depth"] is not None:
            depth.labels(name).set(s["depth"])
        unfinished.labels(name).set(s["unfinished"])
        oldest.labels(name).set(s["oldest_age_s"] or 0)
        consumers.labels(name).set(s["consumers"])
    for name, s in status["stages"].items():
        if s["depth"] is not None:
            celery_length.labels(f"newsflow.{name}").set(s["depth"])
    drops = Gauge("newsflow_drops", "Drops per state", ("status",), registry=registry)
    for state in ("queued", "stored", "duplicate", "rejected", "vanished", "failed"):
        drops.labels(state).set(status["totals"]["drops"].get(state, 0))
    backlog = Gauge("newsflow_replay_backlog", "Drops failed or rejected, awaiting a replay, by reason",
                    ("status", "reason"), registry=registry)  # reasons are DropReason's: bounded
    for state, reasons in status["replay_backlog"].items():
        for reason, count in reasons.items():
            backlog.labels(state, reason).set(count)
    silent = Gauge("newsflow_sources_silent", "Sources more than three usual gaps overdue", registry=registry)
    silent.set(sum(s["silent"] for s in status["sources"]))
    last_seen = Gauge("newsflow_source_last_seen_timestamp_seconds", "When a source's last article arrived",
                      ("source",), registry=registry)
    for source in sorted(status["sources"], key=lambda s: -s["articles"])[:TOP_SOURCES]:
        last_seen.labels(source["source"]).set(datetime.fromisoformat(source["last_seen"]).timestamp())
    return generate_latest(registry), CONTENT_TYPE_LATEST
