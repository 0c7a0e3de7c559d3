"""The parse stage: drop ids in, one outcome per drop out (an article with its MinHash, or a rejection)."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.worker.parsing import parse_drop
from shared.db import among
from shared.models import Blob, Drop
from shared.records import DropOutcome, DropReason, DropStatus, Rejection
from shared.search import search_vectors
from shared.similarity import sketch

log = logging.getLogger(__name__)


def load_queued(session: Session, drop_ids: Sequence[int]) -> list[tuple[int, bytes | None]]:
    """The bytes of each drop still queued; drops already terminal (a redelivery) are skipped."""
    rows = session.execute(
        select(Drop.id, Blob.data)
        .outerjoin(Blob, Blob.sha256 == Drop.sha256)
        .where(among(Drop.id, drop_ids), Drop.status == DropStatus.QUEUED)
        .order_by(Drop.id)
    ).all()
    return [(row.id, row.data) for row in rows]


def parse_one(drop_id: int, data: bytes | None, max_bytes: int, host: str) -> DropOutcome:
    if data is None:
        rejection = Rejection(reason=DropReason.MISSING_BYTES, detail="the drop's bytes are missing from the ledger")
        return DropOutcome(drop_id=drop_id, rejection=rejection, parsed_by=host)
    try:
        result = parse_drop(data, max_bytes=max_bytes)
    except Exception as e:  # a parser bug fails this drop, not its whole batch
        log.exception("parser failed", extra={"drop_id": drop_id})
        return DropOutcome(drop_id=drop_id, error=f"parser error: {type(e).__name__}: {e}", parsed_by=host)
    if isinstance(result, Rejection):
        log.info("drop rejected", extra={"drop_id": drop_id, "reason": result.reason.value})
        return DropOutcome(drop_id=drop_id, rejection=result, parsed_by=host)
    shingles, minhash = sketch(result.body)  # here, once: storage compares these and never re-tokenises
    return DropOutcome(drop_id=drop_id, article=result, shingles=base64.b64encode(shingles).decode(),
                       minhash=base64.b64encode(minhash).decode(), parsed_by=host)


def parse_batch(drops: Sequence[tuple[int, bytes | None]], *, max_bytes: int) -> list[DropOutcome]:
    host = socket.gethostname()  # lineage: which machine parsed each drop
    return [parse_one(drop_id, data, max_bytes, host) for drop_id, data in drops]


def with_search_vectors(session: Session, outcomes: Sequence[DropOutcome]) -> list[DropOutcome]:
    """The outcomes, each article's with its search vector made by this worker's database (storage writes it as
    it is: the tokenising and stemming stay out of its serial path)."""
    parsed = [o for o in outcomes if o.article is not None]
    vectors = dict(zip((o.drop_id for o in parsed),
                       search_vectors(session, [(o.article.title, o.article.body) for o in parsed if o.article]),
                       strict=True))
    return [o.model_copy(update={"search_vector": vectors[o.drop_id]}) if o.drop_id in vectors else o
            for o in outcomes]
