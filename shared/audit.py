"""`newsflow audit`: the invariants of SPEC section 3, checked against PostgreSQL (the record)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    sql: str  # returns the offending rows (id or key first), at most a sample


CHECKS = (
    Check("drops_in_flight", "every drop is terminal, or queued in a stage: waiting, or picked up within its lease",
          "SELECT id, path FROM drops WHERE status = 'queued' AND (stage IS NULL OR sent_at IS NULL "
          "OR (picked_at IS NOT NULL AND lease_expires_at < now())) ORDER BY id"),
    Check("one_article_per_text", "no two articles share a content hash",
          "SELECT content_hash, count(*) FROM articles GROUP BY content_hash HAVING count(*) > 1"),
    Check("articles_have_a_drop", "every article was stored by exactly one drop",
          "SELECT a.id, count(d.id) FROM articles a LEFT JOIN drops d ON d.article_id = a.id "
          "AND d.status = 'stored' GROUP BY a.id HAVING count(d.id) <> 1 ORDER BY a.id"),
    Check("drops_name_their_article", "every stored or duplicate drop names an article",
          "SELECT id, path FROM drops WHERE status IN ('stored', 'duplicate') AND article_id IS NULL ORDER BY id"),
    Check("failures_say_why", "every rejected or failed drop has a reason and a detail",
          "SELECT id, path FROM drops WHERE status IN ('rejected', 'failed') "
          "AND (reason IS NULL OR detail IS NULL) ORDER BY id"),
    Check("enrichments_in_flight", "every pending enrichment waits, or is picked up within its lease",
          "SELECT id FROM articles WHERE enrichment_status = 'pending' "
          "AND enrich_picked_at IS NOT NULL AND enrich_lease_expires_at < now() ORDER BY id"),
    Check("enriched_means_recorded", "every enriched article has its version and time",
          "SELECT id FROM articles WHERE enrichment_status = 'enriched' "
          "AND (enrichment_version IS NULL OR enriched_at IS NULL) ORDER BY id"),
    Check("enrichment_failures_say_why", "every failed enrichment keeps its error",
          "SELECT id FROM articles WHERE enrichment_status = 'failed' AND enrichment_error IS NULL ORDER BY id"),
    Check("entities_of_enriched_only", "only articles enriched at least once have entities",
          "SELECT DISTINCT e.article_id FROM article_entities e JOIN articles a ON a.id = e.article_id "
          "WHERE a.enrichment_version IS NULL ORDER BY 1"),
    Check("one_canonical_per_cluster", "every article is in a cluster with exactly one canonical article",
          "SELECT coalesce(cluster_id, -id), count(*) FILTER (WHERE is_canonical) FROM articles "
          "GROUP BY coalesce(cluster_id, -id) HAVING count(*) FILTER (WHERE is_canonical) <> 1"),
)
SAMPLE = 10


@dataclass(frozen=True)
class Finding:
    check: Check
    count: int
    sample: list[tuple[object, ...]]

    @property
    def ok(self) -> bool:
        return self.count == 0


def run_audit(session: Session) -> list[Finding]:
    findings = []
    for check in CHECKS:
        rows = [tuple(r) for r in session.execute(text(check.sql)).all()]
        findings.append(Finding(check, len(rows), rows[:SAMPLE]))
    return findings


def format_findings(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'FAIL'} {f.check.name:<28} {f.check.description}"
                     + ("" if f.ok else f": {f.count} offending, e.g. {f.sample[:3]}"))
    return "\n".join(lines)
