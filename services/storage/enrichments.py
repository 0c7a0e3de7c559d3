"""Persist enrichments: article fields, entities once per (type, name), a link per article with its count
(`article_keywords` follows `articles.keywords` by a trigger: migration 0010).

Idempotent: an article's entity links are replaced as a whole, so a redelivered or re-run
enrichment leaves exactly one set of links behind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.changes import Change, record_changes
from shared.db import execute_batch, int_array
from shared.models import ArticleEntity, Entity
from shared.records import Enrichment
from shared.search import CONFIG_OF_LANGUAGE_SQL, search_vector_sql, ts_config

log = logging.getLogger(__name__)


def entity_ids(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Id per (type, name), creating the entities not seen before (in key order: no deadlocks)."""
    if not keys:
        return {}
    session.execute(insert(Entity).values([{"type": t, "name": n} for t, n in sorted(keys)])
                    .on_conflict_do_nothing(constraint="uq_entities_type_name"))
    rows = session.execute(
        select(Entity.type, Entity.name, Entity.id).where(tuple_(Entity.type, Entity.name).in_(sorted(keys)))
    ).all()
    return {(r.type, r.name): r.id for r in rows}


LOCK_ARTICLES = "SELECT id FROM articles WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR NO KEY UPDATE"
# With the article's sort key, for ordered lookups by entity (migration 0010 keeps it equal when the date changes).
INSERT_LINKS = ("INSERT INTO article_entities (article_id, entity_id, count, sort_date) "
                "SELECT u.article_id, u.entity_id, u.count, a.sort_date "
                "FROM unnest(%(articles)s::bigint[], %(entities)s::bigint[], %(counts)s::int[]) "
                "AS u(article_id, entity_id, count) JOIN articles a ON a.id = u.article_id "
                "ON CONFLICT DO NOTHING")
# The search vector is made again in the detected language's configuration, unless it was made in that one
# already (always the configuration of the language the row had: `english` for none, as storage makes it), which
# saves most articles about 1 ms of PostgreSQL's text parser.
# Keywords and countries travel as JSON: unnest takes no arrays of arrays of different lengths.
UPDATE_ARTICLES = f"""
UPDATE articles a SET language = u.language, word_count = u.word_count, reading_time_min = u.reading_time_min,
       summary = u.summary, keywords = ARRAY(SELECT jsonb_array_elements_text(u.keywords::jsonb)),
       countries = ARRAY(SELECT jsonb_array_elements_text(u.countries::jsonb)), tone = u.tone,
       enrichment_version = u.version, enriched_at = now(), enrichment_status = 'enriched', enrichment_error = NULL,
       enrich_picked_at = NULL, enrich_lease_expires_at = NULL,
       search_vector = CASE WHEN a.search_vector IS NOT NULL AND u.config::regconfig = ({CONFIG_OF_LANGUAGE_SQL.format(
                                language="a.language")}) THEN a.search_vector
                            ELSE {search_vector_sql("u.config::regconfig", "a.title", "a.body")} END
FROM unnest(%(ids)b::bigint[], %(languages)b::text[], %(word_counts)b::bigint[], %(reading)b::float8[],
            %(summaries)b::text[], %(keywords)b::text[], %(countries)b::text[], %(tones)b::float8[],
            %(versions)b::text[], %(configs)b::text[])
     AS u(id, language, word_count, reading_time_min, summary, keywords, countries, tone, version, config)
WHERE a.id = u.id
"""


def store_enrichments(session: Session, enrichments: Sequence[Enrichment]) -> int:
    """Write one batch in a fixed number of statements; articles deleted meanwhile are skipped. Returns how
    many were written."""
    by_id = {e.article_id: e for e in enrichments}
    present = set(execute_batch(session, LOCK_ARTICLES, {"ids": int_array(sorted(by_id))}).scalars())
    todo = [by_id[i] for i in sorted(present)]
    if not todo:
        return 0
    ids = entity_ids(session, {(m.type, m.text) for e in todo for m in e.entities})
    session.execute(delete(ArticleEntity).where(ArticleEntity.article_id.in_(present)))
    links = [(e.article_id, ids[(m.type, m.text)], m.count) for e in todo for m in e.entities]
    if links:
        execute_batch(session, INSERT_LINKS, {"articles": int_array(a for a, _, _ in links),
                                              "entities": int_array(e for _, e, _ in links),
                                              "counts": int_array(c for _, _, c in links)})
    execute_batch(session, UPDATE_ARTICLES, {
        "ids": [e.article_id for e in todo], "languages": [e.language for e in todo],
        "word_counts": [e.word_count for e in todo], "reading": [float(e.reading_time_min) for e in todo],
        "summaries": [e.summary for e in todo], "keywords": [json.dumps(e.keywords) for e in todo],
        "countries": [json.dumps(e.countries) for e in todo],
        "tones": [None if e.tone is None else float(e.tone) for e in todo], "versions": [e.version for e in todo],
        "configs": [ts_config(e.language) for e in todo]})
    record_changes(session, [e.article_id for e in todo], Change.ENRICHED)
    log.info("enrichments stored", extra={"articles": len(todo), "entities": len(links)})
    return len(todo)
