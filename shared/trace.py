"""`newsflow trace`: one drop's journey, from what the ledger records of it (SPEC section 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.intake import stored_path
from shared.models import Article, ArticleLink, Drop


def find_drop(session: Session, what: str) -> Drop | None:
    """By id, or by path (absolute or relative to here): the latest drop of that path."""
    if what.isdigit():
        return session.get(Drop, int(what))
    path = stored_path(str(Path(what).absolute()))
    return session.execute(select(Drop).where(Drop.path == path).order_by(Drop.id.desc()).limit(1)).scalar()


def trace_drop(session: Session, what: str) -> dict[str, Any] | None:
    drop = find_drop(session, what)
    if drop is None:
        return None
    events: list[tuple[Any, str]] = [(drop.discovered_at, f"discovered on {drop.host}"
                                      + (f", {drop.size:,} bytes, sha256 {drop.sha256[:12]}…" if drop.sha256 else ""))]
    if drop.status == "queued":
        if drop.sent_at:
            events.append((drop.sent_at, f"sent to {drop.stage}"))
        if drop.picked_at:
            events.append((drop.picked_at, f"picked up in {drop.stage} (lease until {drop.lease_expires_at})"))
    if drop.finished_at:
        why = f" ({drop.reason}: {drop.detail})" if drop.reason else ""
        events.append((drop.finished_at, f"{drop.status.value}{why}"
                       + (f"; parsed on {drop.parsed_by}" if drop.parsed_by else "")))
    journey: dict[str, Any] = {
        "drop_id": drop.id, "path": drop.path, "status": drop.status.value, "stage": drop.stage,
        "deliveries": drop.deliveries, "retries": drop.retries, "events": sorted(events, key=lambda e: e[0]),
    }
    if drop.article_id is None:
        return journey
    article = session.get(Article, drop.article_id)
    assert article is not None  # drops.article_id is a foreign key
    journey["article"] = {"id": article.id, "title": article.title, "published_on": article.published_on,
                          "source": article.source, "content_hash": article.content_hash}
    journey["duplicates"] = [{"drop_id": d.id, "path": d.path, "status": d.status.value} for d in session.execute(
        select(Drop).where(Drop.article_id == article.id, Drop.id != drop.id).order_by(Drop.id)).scalars()]
    links = session.execute(select(ArticleLink).where(
        or_(ArticleLink.article_id == article.id, ArticleLink.other_id == article.id))).scalars()
    members = session.execute(select(Article.id).where(Article.cluster_id == article.cluster_id)).scalars().all()
    journey["cluster"] = {"id": article.cluster_id, "canonical": article.is_canonical, "size": len(members),
                          "near_duplicates": [{"article_id": link.other_id if link.article_id == article.id
                                               else link.article_id, "similarity": round(link.similarity, 3)}
                                              for link in links]}
    journey["enrichment"] = {"status": article.enrichment_status.value, "error": article.enrichment_error,
                             "version": article.enrichment_version, "enriched_at": article.enriched_at,
                             "deliveries": article.enrich_deliveries, "retries": article.enrich_retries}
    if article.enriched_at:
        journey["events"].append((article.enriched_at, f"article {article.id} enriched"))
    return journey
