"""The watcher's bookkeeping without servers: what it holds, when it walks, what it takes and when."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.watcher import service
from services.watcher.known import KnownFiles, fingerprint
from services.watcher.service import Watcher
from shared.runtime import Runtime
from shared.settings import Settings

OLD = time.time() - 3600  # an mtime long past the settle interval


def make_watcher(root: Path, **pipeline: object) -> Watcher:  # back-pressure at 200 unfinished drops
    settings = Settings(database_url=SecretStr("postgresql://nobody@127.0.0.1:1/none"),
                        broker_url=SecretStr("redis://127.0.0.1:1/0"),
                        watcher={"settle_s": 2.0, "poll_interval_s": 0.2},
                        pipeline={"batch_size": 20, "batch_wait_s": 0.2, "max_unfinished": 200, **pipeline})
    return Watcher(Runtime(settings), [root])


def write(path: Path, data: bytes = b"date 2020-01-01 T\nbody\n", *, mtime: float | None = OLD) -> Path:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


class FakeIntake:
    """Stands in for the ledger: what is taken is owed by the pipeline until `room` is set again."""

    def __init__(self, watcher: Watcher, room: int = 200) -> None:
        self.limit = watcher.settings.pipeline.max_unfinished
        self.unfinished, self.taken, self.calls = self.limit - room, [], 0
        watcher.unfinished = lambda: self.unfinished  # type: ignore[method-assign]
        watcher.take = self.take  # type: ignore[method-assign]

    @property
    def room(self) -> int:
        return self.limit - self.unfinished

    @room.setter
    def room(self, room: int) -> None:
        self.unfinished = self.limit - room

    def take(self, paths: list[str]) -> int:
        self.calls += 1
        self.unfinished += len(paths)
        self.taken += paths
        return len(paths)


def test_known_files_hold_states_by_fingerprint() -> None:
    known = KnownFiles()
    known.update(fingerprint(f"/d/{i}.txt", i, i * 10) for i in range(5000))
    known.add(fingerprint("/d/new.txt", 1, 2))
    known.add(fingerprint("/d/new.txt", 1, 2))
    assert len(known) == 5001
    assert fingerprint("/d/17.txt", 17, 170) in known and fingerprint("/d/new.txt", 1, 2) in known
    assert fingerprint("/d/17.txt", 17, 171) not in known  # touched: a new state, looked at again
    assert fingerprint("/d/other.txt", 17, 170) not in known


def test_a_backlog_is_walked_a_slice_at_a_time_and_only_while_few_files_wait(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "READY_CAP", 50)
    monkeypatch.setattr(service, "WALK_SLICE", 30)
    root = tmp_path / "drops"
    (root / "sub").mkdir(parents=True)
    names = {write(root / f"{i}.txt").name for i in range(100)} | {"sub/" + write(root / "sub" / "x.txt").name}
    write(root / "skip.tmp")
    watcher = make_watcher(root)
    watcher.walks.start_whole()

    watcher.walk(0.0)
    assert len(watcher.ready) == 30  # one slice
    watcher.walk(0.0)
    assert len(watcher.ready) == 50  # stops at the cap: the rest waits on disk
    watcher.walk(0.0)
    assert len(watcher.ready) == 50
    seen = set(watcher.ready)
    while watcher.walks:
        watcher.ready.clear()
        watcher.walk(0.0)
        seen |= set(watcher.ready)
    assert {str(Path(p).relative_to(root)) for p in seen} == names


def test_the_walk_skips_known_files_and_leaves_young_ones_to_settle(tmp_path: Path) -> None:
    root = tmp_path / "drops"
    root.mkdir()
    known = write(root / "known.txt")
    write(root / "young.txt", mtime=None)
    write(root / "old.txt")
    watcher = make_watcher(root)
    stat = known.stat()
    watcher.known.add(fingerprint(str(known), stat.st_size, stat.st_mtime_ns))
    watcher.walks.start_whole()
    watcher.walk(100.0)
    assert list(watcher.ready) == [str(root / "old.txt")]
    assert list(watcher.tracker.pending) == [str(root / "young.txt")]
    watcher.check_pending(101.0)
    assert str(root / "young.txt") not in watcher.ready
    watcher.check_pending(102.5)  # unchanged for settle_s
    assert str(root / "young.txt") in watcher.ready


def test_a_renamed_file_is_ready_at_once_and_a_rewritten_one_settles_again(tmp_path: Path) -> None:
    root = tmp_path / "drops"
    root.mkdir()
    watcher = make_watcher(root)
    renamed = write(root / "renamed.txt", mtime=None)
    watcher.next_settle = 1e9  # between two looks at the files being written: only renamed ones go
    watcher.consider(str(renamed), 10.0, renamed=True)
    watcher.consider(str(root / "gone.txt"), 10.0, renamed=True)
    watcher.check_pending(10.0)
    assert list(watcher.ready) == [str(renamed)]

    watcher.ready[str(root / "found.txt")] = 10.0
    write(root / "found.txt", b"written again", mtime=None)
    watcher.consider(str(root / "found.txt"), 11.0)  # an event: it changed since the walk found it
    assert str(root / "found.txt") not in watcher.ready
    assert str(root / "found.txt") in watcher.tracker.pending


def test_a_partial_batch_waits_batch_wait_s_and_full_ones_go_while_the_queue_has_room(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = make_watcher(tmp_path)
    intake = FakeIntake(watcher, room=40)
    watcher.next_rescan = 100.0
    watcher.ready = {f"/f/{i}": 0.0 for i in range(5)}
    watcher.flush(0.1)
    assert intake.taken == []
    assert 0.09 < watcher.wait_s(0.1) <= 0.1
    watcher.flush(0.2)
    assert len(intake.taken) == 5
    intake.room = 40

    watcher.ready = {f"/g/{i}": 1.0 for i in range(70)}
    with caplog.at_level(logging.WARNING):
        watcher.flush(1.0)
        assert len(intake.taken) == 5 + 40  # the room the queue had
    assert len(watcher.ready) == 30 and watcher.paused
    assert "paused taking files" in caplog.text
    assert watcher.wait_s(1.0) == watcher.settings.watcher.poll_interval_s
    intake.room = 200
    watcher.flush(1.0)
    assert not watcher.ready and not watcher.paused and "resumed taking files" in caplog.text


def test_taking_resumes_once_half_the_limit_is_free_and_says_so_once(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    watcher = make_watcher(tmp_path)
    intake = FakeIntake(watcher, room=0)  # the pipeline owes max_unfinished drops, in whatever stage
    watcher.ready = {f"/f/{i}": 0.0 for i in range(50)}
    with caplog.at_level(logging.WARNING):
        watcher.flush(1.0)
        assert intake.taken == [] and watcher.paused
        intake.room = 60  # taking again, but not yet worth a line in the log
        watcher.flush(1.0)
        assert len(intake.taken) == 50 and "resumed" not in caplog.text
        intake.room = 200
        watcher.ready = {"/g/0": 0.0}
        watcher.flush(1.0)
        assert "resumed taking files" in caplog.text
    assert caplog.text.count("paused taking files") == 1


def test_takes_are_capped_in_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "TAKE_FILES", 100)  # the watcher slices ready files by it
    watcher = make_watcher(tmp_path)
    intake = FakeIntake(watcher, room=300)
    watcher.ready = {f"/f/{i}": 0.0 for i in range(250)}
    watcher.flush(0.0)
    assert intake.calls == 3 and intake.taken == [f"/f/{i}" for i in range(250)]


def test_a_file_moved_in_from_another_folder_counts_as_renamed_in(tmp_path: Path) -> None:
    root, staging = tmp_path / "drops", tmp_path / "staging"
    root.mkdir()
    staging.mkdir()
    handler = service.EventQueue()
    observer = service.make_observer()
    observer.schedule(handler, str(root), recursive=True, event_filter=service.EVENTS)
    observer.start()
    try:
        write(staging / "a.txt", mtime=None).rename(root / "a.txt")
        write(root / "b.txt.part", mtime=None).rename(root / "b.txt")
        events: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 5
        while len(events) < 2 and handler.wake.wait(max(0.0, deadline - time.monotonic())):
            handler.wake.clear()
            while not handler.events.empty():
                events.add(handler.events.get())
    finally:
        observer.stop()
        observer.join()
    assert events == {("renamed", str(root / "a.txt")), ("renamed", str(root / "b.txt"))}
