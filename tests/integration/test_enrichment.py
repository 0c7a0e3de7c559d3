"""Enrichment on real enricher and storage processes: fields, normalised entities, backfill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date

import pytest
from sqlalchemy import func, select, update

from shared.models import Article, ArticleEntity, Entity
from shared.settings import ENRICHMENT_VERSION
from tests.support import ROOT, TestServers

pytestmark = pytest.mark.integration

SEEDS = ROOT / "seeds"
WIKINEWS = ROOT / "tests" / "data" / "wikinews"


def newsflow(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ingest(pipeline: TestServers, *paths: str) -> None:
    run = newsflow("ingest", *paths, "--wait", "--workers", "0", env={**os.environ, **pipeline.env})
    _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err


def wait_enriched(sessions, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with sessions() as session:
            left = session.execute(select(func.count()).select_from(Article)
                                   .where(Article.enrichment_version.is_distinct_from(ENRICHMENT_VERSION))).scalar()
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} articles not enriched"
        time.sleep(0.2)


def old_versions(sessions) -> int:
    with sessions() as session:
        return session.execute(select(func.count()).select_from(Article)
                               .where(Article.enrichment_version == "0")).scalar()


def mentions(sessions, article_id: int) -> dict[tuple[str, str], int]:
    with sessions() as session:
        rows = session.execute(
            select(Entity.type, Entity.name, ArticleEntity.count).join(ArticleEntity)
            .where(ArticleEntity.article_id == article_id)
        ).all()
    return {(r.type, r.name): r.count for r in rows}


def test_reference_sample_is_enriched(pipeline: TestServers, clean_db: None, sessions) -> None:
    ingest(pipeline, str(SEEDS / "000_6488bdc6352e6c22.txt"))
    wait_enriched(sessions)

    with sessions() as session:
        article = session.execute(select(Article)).scalar_one()
    found = mentions(sessions, article.id)
    assert found[("person", "Mark Esper")] == 2
    assert ("person", "Kim Jong Un") in found
    assert ("person", "Esper") not in found
    assert set(article.countries) == {"JP", "US", "KP", "KR"}
    assert article.language == "en"
    assert article.enrichment_version == ENRICHMENT_VERSION
    assert article.summary and article.summary.startswith("Top Japanese and US military officials")
    assert -1 <= article.tone <= 1
    assert article.word_count > 250 and article.reading_time_min > 0
    assert article.keywords


def test_articles_mentioning_an_entity_in_a_time_window(pipeline: TestServers, clean_db: None,
                                                        sessions) -> None:
    ingest(pipeline, str(WIKINEWS))
    wait_enriched(sessions)

    with sessions() as session:
        entity = session.execute(
            select(Entity).where(Entity.type == "person", Entity.name == "Donald Trump")).scalar_one()
        in_2019 = session.execute(
            select(func.count()).select_from(ArticleEntity).join(Article)
            .where(ArticleEntity.entity_id == entity.id,
                   Article.published_on.between(date(2019, 1, 1), date(2019, 12, 31)))
        ).scalar()
        countries_us = session.execute(
            select(func.count()).select_from(Article).where(Article.countries.contains(["US"]))).scalar()
        duplicated = session.execute(
            select(Entity.type, Entity.name).group_by(Entity.type, Entity.name).having(func.count() > 1)).all()
    assert in_2019 > 0
    assert countries_us > 0
    assert duplicated == []


def test_backfill_re_enriches_old_versions_and_resumes(pipeline: TestServers, clean_db: None,
                                                       sessions) -> None:
    ingest(pipeline, str(WIKINEWS))
    wait_enriched(sessions)
    with sessions() as session, session.begin():
        total = session.execute(update(Article).values(enrichment_version="0")).rowcount
    env = {**os.environ, **pipeline.env}

    interrupted = newsflow("enrich", "--backfill", "--workers", "0", "--window", "40", env=env)
    deadline = time.monotonic() + 120
    while (left := old_versions(sessions)) == total:  # interrupt it once it has made progress
        assert time.monotonic() < deadline and interrupted.poll() is None, "backfill made no progress"
        time.sleep(0.1)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()

    resumed = newsflow("enrich", "--backfill", "--workers", "0", env=env)
    out, err = resumed.communicate(timeout=300)

    assert resumed.returncode == 0, err
    assert 0 < left < total
    assert old_versions(sessions) == 0
    assert "articles re-enriched" in out
