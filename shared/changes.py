"""The change feed (SPEC section 6, `GET /v1/changes`): every committed change to an article, exactly once, to a
consumer that keeps following its cursor, whatever the number of concurrent writers.

Writers add a row to `article_changes` in the transaction that makes the change; the row carries that
transaction's id (`xid`, from `pg_current_xact_id()`) and a `position` from an identity. Neither alone can be
a feed's order: positions and xids are handed out before commit, and transactions commit in any order, so a
change with a smaller position (or xid) can become visible after a larger one was served. "Poll where id >
last" over a sequence skips exactly those rows.

The feed is therefore served in (xid, position) order and only below the snapshot's xmin,
`pg_snapshot_xmin(pg_current_snapshot())`: every transaction with a smaller xid has ended (committed or rolled
back), and every transaction that can still commit a change has an xid at least xmin, so it sorts after every
served row. Nothing can ever appear behind a served cursor; no lock is shared by writers. The cost: a change
waits to be served until every transaction older than it has ended (storage batches last milliseconds).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.db import execute_batch, int_array


class Change(StrEnum):
    CREATED = "created"  # stored (storage)
    CLUSTERED = "clustered"  # its cluster or canonical flag changed (storage)
    UPDATED = "updated"  # its text or metadata changed: an earlier-sorting copy arrived (storage)
    ENRICHED = "enriched"  # its enrichment was stored (storage, for the enricher)


class CursorError(ValueError):
    """A cursor this feed did not make."""


# `%(change)s` is a plain string, `%(ids)s` an integer array literal (shared.db.int_array).
RECORD = "INSERT INTO article_changes (article_id, change) SELECT unnest(%(ids)s::bigint[]), %(change)s"
# Served only below the oldest running transaction (see above); (xid, position) is the index's order.
READ = text("""
    SELECT xid::text AS xid, position, article_id, change, at FROM article_changes
    WHERE (xid, position) > (CAST(:xid AS xid8), :position)
      AND xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY xid, position
    LIMIT :limit""")


def record_changes(session: Session, article_ids: Iterable[int], change: Change) -> None:
    """Add one change per article to the feed, in this (the changing) transaction."""
    ids = sorted(set(article_ids))
    if ids:
        execute_batch(session, RECORD, {"ids": int_array(ids), "change": change.value})


@dataclass(frozen=True)
class FeedCursor:
    """A position in the feed: (xid, position) of the last change served. Opaque to clients."""

    xid: int
    position: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.xid}.{self.position}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> FeedCursor:
        if not value:
            return START
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("ascii")
            xid, position = (int(part) for part in raw.split("."))
        except (ValueError, binascii.Error, UnicodeDecodeError) as e:
            raise CursorError("not a cursor of this feed: pass a next_cursor as it was given") from e
        if not (0 <= xid < 2**63 and 0 <= position < 2**63):
            raise CursorError("not a cursor of this feed: pass a next_cursor as it was given")
        return cls(xid, position)


START = FeedCursor(0, 0)


@dataclass(frozen=True)
class FeedItem:
    cursor: str
    article_id: int
    change: str
    at: datetime


def read_changes(session: Session, after: FeedCursor, limit: int) -> list[FeedItem]:
    """The next changes after the cursor that can be served now (possibly none)."""
    rows = session.execute(READ, {"xid": str(after.xid), "position": after.position, "limit": limit}).all()
    return [FeedItem(FeedCursor(int(r.xid), r.position).encode(), r.article_id, r.change, r.at) for r in rows]
