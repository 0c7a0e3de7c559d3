"""What the /ops page adds to the status object: the last hour minute by minute (throughput and lag), and the
failures by reason with their drops. Read from the ledger through the indexes on `drops.finished_at`,
`articles.enriched_at` and the replay backlog."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

HOUR_MIN = 60
DROPS_PER_REASON = 10

FINISHED_PER_MINUTE = text("""
    SELECT date_trunc('minute', finished_at) AS minute, status, count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - discovered_at)),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - discovered_at))
    FROM drops WHERE finished_at >= :since GROUP BY 1, 2""")
ENRICHED_PER_MINUTE = text("""
    SELECT date_trunc('minute', enriched_at), count(*) FROM articles WHERE enriched_at >= :since GROUP BY 1""")
NOW_MINUTE = text("SELECT date_trunc('minute', now())")
FAILURES = text("""
    SELECT status, coalesce(reason, 'unknown') AS reason, id, path, detail, finished_at, total
    FROM (SELECT status, reason, id, path, detail, finished_at,
                 row_number() OVER (PARTITION BY status, reason ORDER BY id DESC) AS n,
                 count(*) OVER (PARTITION BY status, reason) AS total
          FROM drops WHERE status IN ('failed', 'rejected')) f
    WHERE n <= :per_reason ORDER BY status, total DESC, reason, id DESC""")

SERIES = ("stored", "duplicate", "rejected", "failed", "enriched")


def last_hour(session: Session) -> dict[str, Any]:
    """Per minute over the last hour, oldest first: `minutes` (ISO times), counts per outcome (`stored`,
    `duplicate`, `rejected`, `failed`, `enriched`) and the stored drops' lag (`lag_p50_s`, `lag_p95_s`; None
    for a minute that stored nothing)."""
    now_minute: datetime = session.execute(NOW_MINUTE).scalar_one()
    minutes = [now_minute - timedelta(minutes=HOUR_MIN - 1 - i) for i in range(HOUR_MIN)]
    slot = {minute: i for i, minute in enumerate(minutes)}
    history: dict[str, Any] = {name: [0] * HOUR_MIN for name in SERIES}
    history["lag_p50_s"] = [None] * HOUR_MIN
    history["lag_p95_s"] = [None] * HOUR_MIN
    for minute, status, count, p50, p95 in session.execute(FINISHED_PER_MINUTE, {"since": minutes[0]}):
        if minute in slot and status in history:
            history[status][slot[minute]] = count
            if status == "stored":
                history["lag_p50_s"][slot[minute]] = None if p50 is None else round(p50, 2)
                history["lag_p95_s"][slot[minute]] = None if p95 is None else round(p95, 2)
    for minute, count in session.execute(ENRICHED_PER_MINUTE, {"since": minutes[0]}):
        if minute in slot:
            history["enriched"][slot[minute]] = count
    history["minutes"] = [m.isoformat() for m in minutes]
    return history


def failures(session: Session, per_reason: int = DROPS_PER_REASON) -> list[dict[str, Any]]:
    """Rejected and failed drops by (status, reason), most common first: the count and the latest drops."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in session.execute(FAILURES, {"per_reason": per_reason}):
        group = groups.setdefault((row.status, row.reason), {
            "status": row.status, "reason": row.reason, "count": row.total, "drops": []})
        group["drops"].append({"id": row.id, "path": row.path, "detail": row.detail,
                               "finished_at": row.finished_at.isoformat() if row.finished_at else None})
    return list(groups.values())
