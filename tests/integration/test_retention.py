"""`newsflow prune`: the kept bytes of long-finished stored and duplicate drops go; those a drop still needs
(queued, rejected or failed, or finished recently) stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import transaction
from shared.intake import read_file, register_reads
from tests.support import ROOT, TestServers, newsflow

pytestmark = pytest.mark.integration

WIKINEWS = sorted((ROOT / "tests" / "data" / "wikinews").glob("*.txt"))
BINARY = ROOT / "seeds" / "109_binary.bin"



def test_prune_frees_only_what_no_drop_needs(pipeline: TestServers, clean_db: None, sessions, tmp_path: Path
                                            ) -> None:
    folder = tmp_path / "drops"
    folder.mkdir()
    for path in [*WIKINEWS[:3], BINARY]:
        (folder / path.name).write_bytes(path.read_bytes())
    assert newsflow(pipeline.env, "ingest", str(folder), "--wait", "--workers", "0").returncode == 0
    copy = tmp_path / "copy.txt"  # the first file's content again, still queued: its bytes are needed
    copy.write_bytes(WIKINEWS[0].read_bytes())
    with transaction(sessions) as session:
        register_reads(session, [read_file(copy, 1 << 20)], host="test", max_bytes=1 << 20)
        session.execute(text("UPDATE drops SET finished_at = now() - interval '40 days' WHERE status <> 'queued'"))
        before = session.execute(text("SELECT count(*) FROM blobs")).scalar_one()

    pruned = newsflow(pipeline.env, "prune", "--older-than", "30")

    assert pruned.returncode == 0, pruned.stderr
    assert "pruned the kept bytes of 2 contents" in pruned.stdout
    with sessions() as session:
        kept = set(session.execute(text("SELECT d.path FROM drops d JOIN blobs b ON b.sha256 = d.sha256")).scalars())
        articles = session.execute(text("SELECT count(*) FROM articles")).scalar_one()
    assert before == 4
    assert {Path(p).name for p in kept} == {WIKINEWS[0].name, "copy.txt", BINARY.name}  # queued, rejected
    assert articles == 3  # the articles keep the text
    assert newsflow(pipeline.env, "prune", "--older-than", "30").stdout.startswith("pruned the kept bytes of 0")
