"""The operator view of SPEC section 7 (`newsflow status`, `GET /v1/status`), from the ledger and heartbeats.

Every figure but a queue's broker depth comes from PostgreSQL, so it is exact with prefetch, priorities
and zero consumers: unfinished items and their oldest age per stage (drops queued in `parse` or `store`,
articles whose enrichment is pending), consumers from the services' heartbeats, totals, rates, lags,
the replay backlog and silent sources. Each query reads through an index (migrations 0006 and 0007), so
a ledger of a million drops answers well within a second (`tests/bench/bench_status.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.celery_app import queue_depths
from shared.db import seconds
from shared.errors import TransientError, transient_boundary
from shared.heartbeats import LIVE_S
from shared.queues import STAGE_QUEUES, Queue
from shared.records import Stage

if TYPE_CHECKING:
    from shared.runtime import Runtime

RATE_WINDOWS_MIN = (1, 5, 15)
LAG_WINDOW_MIN = 15
SOURCE_WINDOW_DAYS = 7
SOURCE_MIN_ARTICLES = 10
SILENT_GAPS = 3

UNFINISHED_DROPS = text("""
    SELECT stage, count(*), extract(epoch FROM now() - min(sent_at))
    FROM drops WHERE status = 'queued' GROUP BY stage""")
UNFINISHED_ENRICHMENT = text("""
    SELECT count(*), extract(epoch FROM now() - min(coalesce(enrich_sent_at, created_at)))
    FROM articles WHERE enrichment_status = 'pending'""")
WORKERS = text("""
    SELECT node, service, host, pid, queues, concurrency, active, started_at,
           extract(epoch FROM now() - beat_at) AS last_seen_s
    FROM heartbeats WHERE beat_at > now() - :live ORDER BY service, node""")
DROP_TOTALS = text("SELECT status, count(*) FROM drops GROUP BY status")
ARTICLE_TOTALS = text("""
    SELECT count(*), count(*) FILTER (WHERE enrichment_status = 'enriched'),
           count(*) FILTER (WHERE enrichment_status = 'failed') FROM articles""")
# The database on disk, and the original bytes kept (what `newsflow prune` frees): sizes, not scans.
SIZES = text("SELECT pg_database_size(current_database()), pg_total_relation_size('blobs')")
DROP_RATES = text("""
    SELECT status, count(*) FILTER (WHERE finished_at > now() - interval '1 minute'),
           count(*) FILTER (WHERE finished_at > now() - interval '5 minutes'), count(*)
    FROM drops WHERE finished_at > now() - interval '15 minutes' GROUP BY status""")
ENRICH_RATES = text("""
    SELECT count(*) FILTER (WHERE enriched_at > now() - interval '1 minute'),
           count(*) FILTER (WHERE enriched_at > now() - interval '5 minutes'), count(*)
    FROM articles WHERE enriched_at > now() - interval '15 minutes'""")
STORED_LAG = text("""
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.95) WITHIN GROUP (ORDER BY s)
    FROM (SELECT extract(epoch FROM finished_at - discovered_at) AS s FROM drops
          WHERE finished_at > now() - :window AND status = 'stored') lag""")
ENRICHED_LAG = text("""
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s), percentile_cont(0.95) WITHIN GROUP (ORDER BY s)
    FROM (SELECT extract(epoch FROM a.enriched_at - d.discovered_at) AS s
          FROM articles a JOIN drops d ON d.article_id = a.id AND d.status = 'stored'
          WHERE a.enriched_at > now() - :window) lag""")
REPLAY_BACKLOG = text("""
    SELECT status, coalesce(reason, 'unknown'), count(*) FROM drops
    WHERE status IN ('failed', 'rejected') GROUP BY status, reason""")
# Per source seen in the window: its last article, and the 90th percentile of the gaps between its articles.
# A window over the week's articles (seconds on a million): refreshed into source_stats every
# SOURCES_REFRESH_S by the watcher (or by status when the table is older), read by status at once.
REFRESH_SOURCES = text("""
    WITH fresh AS (
        SELECT source, max(created_at) AS last_seen, count(*) AS articles,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY gap) AS usual_gap_s
        FROM (SELECT source, created_at, extract(epoch FROM created_at - lag(created_at)
                     OVER (PARTITION BY source ORDER BY created_at)) AS gap
              FROM articles WHERE source IS NOT NULL AND created_at > now() - :days) s
        GROUP BY source),
    gone AS (DELETE FROM source_stats WHERE source NOT IN (SELECT source FROM fresh))
    INSERT INTO source_stats (source, last_seen, articles, usual_gap_s, refreshed_at)
    SELECT source, last_seen, articles, usual_gap_s, now() FROM fresh
    ON CONFLICT (source) DO UPDATE SET last_seen = EXCLUDED.last_seen, articles = EXCLUDED.articles,
        usual_gap_s = EXCLUDED.usual_gap_s, refreshed_at = now()""")
SOURCES_AGE = text("SELECT extract(epoch FROM now() - min(refreshed_at)) FROM source_stats")
# Between refreshes, a source's last article comes from the index on (source, created_at).
SOURCES = text("""
    SELECT s.source, greatest(s.last_seen, coalesce(l.last_seen, s.last_seen)) AS last_seen, s.articles,
           s.usual_gap_s, extract(epoch FROM now() - greatest(s.last_seen, coalesce(l.last_seen, s.last_seen)))
           AS quiet_s
    FROM source_stats s
    LEFT JOIN LATERAL (SELECT max(created_at) AS last_seen FROM articles a WHERE a.source = s.source) l ON true
    ORDER BY s.source""")
SOURCES_REFRESH_S = 300

Status = dict[str, Any]


def _round(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def stages(session: Session, depth: Callable[[str], int | None], workers: list[dict[str, Any]]) -> Status:
    drops = {stage: (count, age) for stage, count, age in session.execute(UNFINISHED_DROPS)}
    enrich_count, enrich_age = session.execute(UNFINISHED_ENRICHMENT).one()
    unfinished = {Stage.PARSE: drops.get(Stage.PARSE.value, (0, None)), Stage.STORE: drops.get(Stage.STORE.value,
                  (0, None)), Stage.ENRICH: (enrich_count, enrich_age)}
    result = {}
    for stage, queue in STAGE_QUEUES.items():
        count, age = unfinished[stage]
        consumers = sum(w["concurrency"] for w in workers if queue.value in w["queues"])
        result[stage.value] = {"depth": depth(queue.value), "unfinished": int(count), "oldest_age_s": _round(age),
                               "consumers": consumers}
    return result


def live_workers(session: Session) -> list[dict[str, Any]]:
    return [{"hostname": r.node, "service": r.service, "host": r.host, "pid": r.pid, "queues": list(r.queues),
             "concurrency": r.concurrency, "active": r.active, "started_at": r.started_at.isoformat(),
             "last_seen_s": _round(r.last_seen_s)}
            for r in session.execute(WORKERS, {"live": seconds(LIVE_S)})]


def totals(session: Session) -> Status:
    drops = {status: count for status, count in session.execute(DROP_TOTALS)}
    articles, enriched, failed = session.execute(ARTICLE_TOTALS).one()
    database_bytes, kept_bytes = session.execute(SIZES).one()
    return {"drops": drops, "articles": articles, "enriched": enriched, "enrichment_failed": failed,
            "database_bytes": database_bytes, "kept_bytes": kept_bytes}


def rates(session: Session) -> Status:
    """Per minute over the last 1, 5 and 15 minutes."""
    per_status = {status: counts for status, *counts in session.execute(DROP_RATES)}
    enriched = session.execute(ENRICH_RATES).one()
    result: Status = {}
    for name in ("stored", "duplicate", "rejected", "failed"):
        counts = per_status.get(name, (0, 0, 0))
        result[name] = {f"{w}m": round(c / w, 2) for w, c in zip(RATE_WINDOWS_MIN, counts, strict=True)}
    result["enriched"] = {f"{w}m": round(c / w, 2) for w, c in zip(RATE_WINDOWS_MIN, enriched, strict=True)}
    return result


def lags(session: Session) -> Status:
    """Seconds from discovery to stored and to enriched, p50 and p95 over the last LAG_WINDOW_MIN minutes."""
    result = {}
    for name, query in (("stored", STORED_LAG), ("enriched", ENRICHED_LAG)):
        p50, p95 = session.execute(query, {"window": seconds(LAG_WINDOW_MIN * 60)}).one()
        result[name] = {"p50": _round(p50, 2), "p95": _round(p95, 2)}
    return result


def replay_backlog(session: Session) -> Status:
    backlog: Status = {"failed": {}, "rejected": {}}
    for status, reason, count in session.execute(REPLAY_BACKLOG):
        backlog[status][reason] = count
    return backlog


def refresh_sources(session: Session) -> None:
    session.execute(REFRESH_SOURCES, {"days": seconds(SOURCE_WINDOW_DAYS * 86_400)})


def sources(session: Session) -> list[Status]:
    """Each source seen over SOURCE_WINDOW_DAYS: last article, usual gap (p90, with SOURCE_MIN_ARTICLES at
    least), and `silent` when more than SILENT_GAPS usual gaps have passed since its last article. The gaps
    come from source_stats; refreshed here only when no watcher has in SOURCES_REFRESH_S."""
    age = session.execute(SOURCES_AGE).scalar()
    if age is None or age > 2 * SOURCES_REFRESH_S:
        refresh_sources(session)
        session.commit()
    found = []
    for row in session.execute(SOURCES):
        usual = row.usual_gap_s if row.articles >= SOURCE_MIN_ARTICLES else None
        found.append({"source": row.source, "last_seen": row.last_seen.isoformat(), "articles": row.articles,
                      "usual_gap_s": _round(usual), "silent": bool(usual and row.quiet_s > SILENT_GAPS * usual)})
    return found


def current_status(runtime: Runtime) -> Status:
    """The status object now: broker depths over one connection (None while the broker is away: every other
    figure comes from PostgreSQL), the rest from the ledger. What `newsflow status` and the api serve."""
    try:
        with transient_boundary():
            depths: dict[str, int] | None = queue_depths(runtime.celery, [q.value for q in Queue])
    except TransientError:
        depths = None
    with runtime.sessions() as session:
        return build_status(session, lambda queue: None if depths is None else depths.get(queue))


def build_status(session: Session, depth: Callable[[str], int | None]) -> Status:
    """The status object, exactly the keys of SPEC section 7. `depth(queue)` gives a queue's broker depth
    (None when the broker cannot be asked)."""
    workers = live_workers(session)
    return {"stages": stages(session, depth, workers), "workers": workers, "totals": totals(session),
            "rates": rates(session), "lag_s": lags(session), "replay_backlog": replay_backlog(session),
            "sources": sources(session)}
