"""The `newsflow` command as a user runs it: ingest with a summary, export, embedded servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import ROOT, TestServers

pytestmark = pytest.mark.integration

SEEDS = ROOT / "seeds"
SEED_FILES = 11
SEED_REJECTED = {"107_empty.txt": "empty", "108_no_body.txt": "no_body", "109_binary.bin": "not_text"}


def newsflow(*args: str, env: dict[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout_s, check=False)


def without_urls(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSFLOW_")}
    return env | {"NEWSFLOW_DATA_DIR": str(data_dir)}


def test_ingest_waits_and_summarises(pipeline: TestServers, clean_db: None) -> None:
    env = {**os.environ, **pipeline.env}
    result = newsflow("ingest", str(SEEDS), "--wait", "--workers", "0", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == SEED_FILES
    assert report["counts"] == {"stored": SEED_FILES - len(SEED_REJECTED), "rejected": len(SEED_REJECTED)}
    assert {Path(p["path"]).name: p["reason"] for p in report["problems"]} == SEED_REJECTED

    text = newsflow("ingest", str(SEEDS), "--wait", "--workers", "0", env=env)
    assert text.returncode == 0, text.stderr
    assert f"{SEED_FILES} files seen, 0 new drops ({SEED_FILES} already known)" in text.stdout
    assert "rejected  empty" in text.stdout


def test_export_gives_the_consumer_records(pipeline: TestServers, clean_db: None) -> None:
    env = {**os.environ, **pipeline.env}
    assert newsflow("ingest", str(SEEDS), "--wait", "--workers", "0", env=env).returncode == 0

    articles = [json.loads(line) for line in newsflow("export", "articles", "--jsonl", env=env).stdout.splitlines()]
    drops = [json.loads(line) for line in newsflow("export", "drops", "--jsonl", env=env).stdout.splitlines()]

    assert len(articles) == SEED_FILES - len(SEED_REJECTED)
    assert len(drops) == SEED_FILES
    reference = next(a for a in articles if a["title"].startswith("U.S., Japan defense chiefs"))
    assert reference["published_on"] == "2019-06-26"
    assert reference["source"] == "Bloomberg News"
    assert len(reference["paragraphs"]) == 7
    assert {"id", "content_hash", "body", "warnings", "language", "entities", "cluster_id", "is_canonical",
            "countries", "tone", "keywords", "summary", "word_count"} <= set(reference)
    assert [Path(d["path"]).name for d in reference["drops"]] == ["000_6488bdc6352e6c22.txt"]
    assert {"path", "sha256", "size", "status", "reason", "detail", "article_id"} <= set(drops[0])


def _running_servers(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(data_dir) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_embedded_default_starts_reuses_and_stops_servers(tmp_path: Path) -> None:
    data_dir = tmp_path / "nf"
    env = without_urls(data_dir)

    first = newsflow("ingest", str(SEEDS), "--wait", "--json", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["counts"]["stored"] == SEED_FILES - len(SEED_REJECTED)
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert _running_servers(data_dir) == []  # stopped on exit

    second = newsflow("ingest", str(SEEDS), "--wait", "--json", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["new_drops"] == 0  # the same database, reused
    assert _running_servers(data_dir) == []
