"""The whole path on real services: files in a watched folder end as rows in PostgreSQL."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from shared.models import Article, Drop
from shared.records import DropStatus
from tests.conftest import TEST_MAX_BYTES
from tests.support import ROOT, ServiceProcess, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration

WIKINEWS = ROOT / "tests" / "data" / "wikinews"
REFERENCE = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"


def articles_by_id(sessions) -> dict[int, Article]:
    with sessions() as session:
        return {a.id: a for a in session.execute(select(Article)).scalars()}


def test_reference_and_wikinews_all_stored(watcher: ServiceProcess, drop_dir: Path, sessions) -> None:
    index = [json.loads(line) for line in (WIKINEWS / "index.jsonl").read_text().splitlines()]
    shutil.copy(REFERENCE, drop_dir / REFERENCE.name)
    for entry in index:
        shutil.copy(WIKINEWS / entry["file"], drop_dir / entry["file"])

    drops = wait_for_drops(sessions, len(index) + 1)

    assert {d.status for d in drops} == {DropStatus.STORED}, [(d.path, d.status, d.detail) for d in drops
                                                               if d.status != DropStatus.STORED]
    articles = articles_by_id(sessions)
    by_name = {Path(d.path).name: articles[d.article_id] for d in drops}
    for entry in index:
        article = by_name[entry["file"]]
        assert article.title == entry["title"]
        assert article.published_on == date.fromisoformat(entry["published_on"])
        assert len(article.paragraphs) == entry["paragraphs"]
        assert article.source == entry["source"]
    reference = by_name[REFERENCE.name]
    assert reference.title == "U.S., Japan defense chiefs affirm security pact Trump questioned"
    assert reference.source == "Bloomberg News"
    assert len(reference.paragraphs) == 7


def test_same_file_twice_is_one_article_and_one_duplicate(watcher, drop_dir: Path, sessions) -> None:
    data = REFERENCE.read_bytes()
    write_atomically(drop_dir / "first.txt", data)
    wait_for_drops(sessions, 1)
    write_atomically(drop_dir / "copy.txt", data)

    drops = {Path(d.path).name: d for d in wait_for_drops(sessions, 2)}

    assert len(articles_by_id(sessions)) == 1
    assert drops["first.txt"].status == DropStatus.STORED
    assert drops["copy.txt"].status == DropStatus.DUPLICATE
    assert drops["copy.txt"].article_id == drops["first.txt"].article_id
    assert str(drops["first.txt"].article_id) in drops["copy.txt"].detail


def test_syndicated_copy_with_other_title_and_credit_is_a_duplicate(watcher, drop_dir: Path, sessions) -> None:
    original = REFERENCE.read_text(encoding="utf-8")
    lines = original.splitlines()
    lines[0] = " date 2019-06-27 Japan and US reaffirm their security pact"
    lines[-1] = "associated press"
    write_atomically(drop_dir / "bloomberg.txt", original.encode())
    write_atomically(drop_dir / "ap.txt", "\r\n".join(lines).encode("utf-16"))

    drops = wait_for_drops(sessions, 2)

    assert sorted(d.status for d in drops) == [DropStatus.DUPLICATE, DropStatus.STORED]
    assert len(articles_by_id(sessions)) == 1


def test_slowly_written_file_is_never_taken_half_written(watcher, drop_dir: Path, sessions) -> None:
    data = REFERENCE.read_bytes()
    chunks = [data[i:i + 300] for i in range(0, len(data), 300)]
    with (drop_dir / "slow.txt").open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
            handle.flush()
            time.sleep(0.3)  # below the 0.5 s settle interval, far above the watcher's poll

    [drop] = wait_for_drops(sessions, 1)

    assert drop.size == len(data)
    assert drop.status == DropStatus.STORED
    assert len(articles_by_id(sessions)[drop.article_id].paragraphs) == 7


def test_watcher_restart_does_not_reingest(watcher: ServiceProcess, drop_dir: Path, sessions, pipeline) -> None:
    shutil.copy(REFERENCE, drop_dir / "a.txt")
    wait_for_drops(sessions, 1)
    watcher.stop()
    shutil.copy(WIKINEWS / "000_2c14fc37c52d3cbf.txt", drop_dir / "b.txt")  # dropped while it was down

    with ServiceProcess("watcher", pipeline, "--drop", str(drop_dir)) as again:
        again.wait_for_log("watching")
        drops = wait_for_drops(sessions, 2)
        time.sleep(1.5)  # a full rescan interval: nothing more may appear

    with sessions() as session:
        assert session.query(Drop).count() == 2
    assert {d.status for d in drops} == {DropStatus.STORED}


def test_ignored_names_and_escaping_symlinks(watcher, drop_dir: Path, tmp_path: Path, sessions) -> None:
    data = REFERENCE.read_bytes()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(WIKINEWS.joinpath("001_df95ba9dd80a3030.txt").read_bytes())
    (drop_dir / ".hidden.txt").write_bytes(data)
    (drop_dir / "draft.tmp").write_bytes(data)
    (drop_dir / "upload.part").write_bytes(data)
    (drop_dir / "escape.txt").symlink_to(outside)
    write_atomically(drop_dir / "name with spaces é.txt", data)

    drops = wait_for_drops(sessions, 1)
    time.sleep(1.5)  # a rescan must not find the others either

    assert [Path(d.path).name for d in wait_for_drops(sessions, 1)] == ["name with spaces é.txt"]
    assert drops[0].status == DropStatus.STORED


BAD_INPUTS = {
    "empty.txt": (b"  \n\n \t\n", DropStatus.REJECTED, "empty"),
    "binary.bin": (b"\x00\x01\x02PNG\x00\x00" * 50, DropStatus.REJECTED, "not_text"),
    "huge.txt": (b"date 2020-01-01 Big\n" + b"word " * (TEST_MAX_BYTES // 4), DropStatus.REJECTED, "too_large"),
    "no_body.txt": (b"date 2020-01-01 Only a header\n\n", DropStatus.REJECTED, "no_body"),
    "no_header.txt": (b"A headline without a date\nThe body paragraph.\n", DropStatus.STORED, None),
    "bad_date.txt": (b"date 2019-02-30 Impossible day\nThe body paragraph here.\n", DropStatus.STORED, None),
}


def test_each_bad_input_ends_in_its_state_with_its_reason(watcher, drop_dir: Path, sessions) -> None:
    for name, (data, _, _) in BAD_INPUTS.items():
        write_atomically(drop_dir / name, data)

    drops = {Path(d.path).name: d for d in wait_for_drops(sessions, len(BAD_INPUTS))}

    for name, (_, status, reason) in BAD_INPUTS.items():
        assert drops[name].status == status, name
        if reason:
            assert drops[name].reason == reason, name
            assert drops[name].detail, name
    articles = articles_by_id(sessions)
    assert articles[drops["no_header.txt"].article_id].warnings == ["header_missing"]
    assert articles[drops["bad_date.txt"].article_id].warnings == ["date_invalid"]
    assert articles[drops["bad_date.txt"].article_id].published_on is None
