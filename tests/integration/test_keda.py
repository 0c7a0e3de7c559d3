"""The KEDA ScaledObjects' queries, read out of deploy/k8s/base and run on a real ledger: for each row of the README's
table (section "Deploying") the query returns the pods it says and KEDA's arithmetic (replicas =
ceil(value / targetQueryValue), within min and max) gives the replicas it says, whether the items wait in the
queue or are in flight, and with the items of other stages and finished ones beside them, which must not count."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.conftest import ADMIN_URL
from tests.support import migrated_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
# A row: | worker | 1,100 | 300 | 2 | 2 | (ScaledObject, unfinished items, of them in flight, query, replicas)
ROW = re.compile(r"^\| (worker|enricher) \| ([\d,]+) \| ([\d,]+) \| (\d+) \| (\d+) \|", re.MULTILINE)
NOISE = 50  # finished items and items of other stages seeded beside each case


def scaled_object(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / f"scaledobject-{name}.yaml").read_text())


def readme_cases() -> list[tuple[str, int, int, int, int]]:
    return [(name, int(items.replace(",", "")), int(flight.replace(",", "")), int(query), int(replicas))
            for name, items, flight, query, replicas in ROW.findall(README)]


@pytest.fixture(scope="module")
def ledger_url() -> Iterator[str]:
    with migrated_database(ADMIN_URL, "newsflow_keda") as url:
        yield url


def seed(conn: psycopg.Connection, name: str, items: int, in_flight: int) -> None:
    """`items` unfinished for the ScaledObject's stage, `in_flight` of them picked up by a worker; then noise."""
    conn.execute("TRUNCATE drops, articles RESTART IDENTITY CASCADE")
    waiting = items - in_flight
    if name == "worker":
        conn.execute("""INSERT INTO drops (path, host, status, stage, sent_at, picked_at)
                        SELECT 'p' || i, 'h', 'queued', 'parse', now(), CASE WHEN i <= %s THEN now() END
                        FROM generate_series(1, %s) i""", (in_flight, items))
    else:
        conn.execute("""INSERT INTO articles (content_hash, title, paragraphs, body, encoding, pipeline_version,
                                              enrichment_status, enrich_sent_at, enrich_picked_at)
                        SELECT 'a' || i, 't', '[]', 'b', 'utf-8', '1', 'pending', now(),
                               CASE WHEN i <= %s THEN now() END
                        FROM generate_series(1, %s) i""", (in_flight, items))
    assert waiting >= 0
    # What neither query may count: drops in the store stage or finished, articles enriched or failed.
    conn.execute("""INSERT INTO drops (path, host, status, stage, sent_at, finished_at)
                    SELECT 'n' || i, 'h', (ARRAY['queued', 'stored', 'duplicate', 'rejected', 'failed'])[1 + mod(i, 5)],
                           CASE WHEN mod(i, 5) = 0 THEN 'store' END, now(), CASE WHEN mod(i, 5) <> 0 THEN now() END
                    FROM generate_series(1, %s) i""", (NOISE,))
    conn.execute("""INSERT INTO articles (content_hash, title, paragraphs, body, encoding, pipeline_version,
                                          enrichment_status)
                    SELECT 'n' || i, 't', '[]', 'b', 'utf-8', '1', (ARRAY['enriched', 'failed'])[1 + mod(i, 2)]
                    FROM generate_series(1, %s) i""", (NOISE,))


def keda_replicas(spec: dict[str, Any], value: float) -> int:
    """What KEDA and the HPA make of the query's value: AverageValue target, then the bounds."""
    metadata = spec["triggers"][0]["metadata"]
    if value <= float(metadata.get("activationTargetQueryValue", "0")):
        return spec["minReplicaCount"]
    wanted = math.ceil(value / float(metadata["targetQueryValue"]))
    return max(spec["minReplicaCount"], min(spec["maxReplicaCount"], wanted))


def test_the_readme_table_covers_0_1_many_and_in_flight() -> None:
    cases = readme_cases()
    for name in ("worker", "enricher"):
        mine = [c for c in cases if c[0] == name]
        assert {0, 1} <= {c[1] for c in mine}, name
        assert any(c[1] > 1000 for c in mine), name
        assert any(c[2] > 0 for c in mine), name
        assert any(c[4] == scaled_object(name)["spec"]["maxReplicaCount"] and c[3] > c[4] for c in mine), name


@pytest.mark.parametrize(("name", "items", "in_flight", "query", "replicas"), readme_cases())
def test_the_query_gives_the_replicas_the_readme_says(ledger_url: str, name: str, items: int, in_flight: int,
                                                      query: int, replicas: int) -> None:
    spec = scaled_object(name)["spec"]
    trigger = spec["triggers"][0]
    assert trigger["type"] == "postgresql"
    with psycopg.connect(ledger_url, autocommit=True) as conn:
        seed(conn, name, items, in_flight)
        (value,) = conn.execute(trigger["metadata"]["query"]).fetchone()  # type: ignore[misc]
    assert float(value) == query
    assert keda_replicas(spec, float(value)) == replicas


def test_the_queries_read_through_the_partial_indexes(ledger_url: str) -> None:
    """A million-drop ledger must not mean a scan every 15 s: the plans use the unfinished-items indexes."""
    with psycopg.connect(ledger_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        for name, index in (("worker", "ix_drops_unfinished"), ("enricher", "ix_articles_enrich_unfinished")):
            query = scaled_object(name)["spec"]["triggers"][0]["metadata"]["query"]
            plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {query}"))
            assert index in plan, plan
