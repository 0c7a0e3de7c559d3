"""Retention (`newsflow prune --older-than DAYS`, or daily by the watcher with NEWSFLOW_RETENTION__PRUNE_DAYS):
continuous ingestion must not fill the disk. The original bytes of drops that ended `stored` or `duplicate`
long ago are deleted (their article keeps the text); bytes a drop still needs are never touched: a drop
queued, or `rejected` or `failed` (awaiting a replay), or one that ended recently. Blobs are kept once per
content, so a content goes only when no drop of it needs it. Small transactions, so storage never waits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.db import seconds, transaction

log = logging.getLogger(__name__)

BATCH = 1000
PRUNE = text("""
    WITH old AS (
        SELECT DISTINCT d.sha256 FROM drops d
        WHERE d.status IN ('stored', 'duplicate') AND d.finished_at < now() - :age AND d.sha256 IS NOT NULL
          AND EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = d.sha256)
          AND NOT EXISTS (SELECT 1 FROM drops o WHERE o.sha256 = d.sha256
                          AND (o.status NOT IN ('stored', 'duplicate') OR o.finished_at >= now() - :age))
        LIMIT :batch)
    DELETE FROM blobs b USING old WHERE b.sha256 = old.sha256
    RETURNING b.size""")


@dataclass(frozen=True)
class Pruned:
    blobs: int
    bytes: int


def prune(sessions: sessionmaker[Session], *, older_than_days: float, batch: int = BATCH) -> Pruned:
    """Delete the kept bytes of drops that ended stored or duplicate over `older_than_days` ago."""
    blobs = size = 0
    while True:
        with transaction(sessions) as session:
            sizes = session.execute(PRUNE, {"age": seconds(older_than_days * 86_400), "batch": batch}).scalars().all()
        blobs, size = blobs + len(sizes), size + sum(sizes)
        if len(sizes) < batch:
            break
    if blobs:
        log.info("kept bytes pruned", extra={"blobs": blobs, "bytes": size, "older_than_days": older_than_days})
    return Pruned(blobs, size)
