"""Which files the watcher and `newsflow ingest` take, and how they are read."""

import logging
import os
import threading
from pathlib import Path

import pytest

from shared.intake import candidate_stat, is_candidate, iter_candidates, raw_path, read_file, scan_tree, stored_path
from shared.records import DropReason


def make_tree(root: Path, outside: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / ".hidden-dir").mkdir()
    for name in ("a.txt", "sub/b.txt", ".dot.txt", "x.tmp", "y.PART", ".hidden-dir/c.txt", "név\nwith newline.txt"):
        (root / name).write_text("date 2020-01-01 T\nbody\n")
    outside.write_text("secret")
    (root / "escape.txt").symlink_to(outside)
    (root / "inside-link.txt").symlink_to(root / "a.txt")


def test_only_complete_names_inside_the_folder_are_candidates(tmp_path: Path) -> None:
    root = tmp_path / "drops"
    make_tree(root, tmp_path / "outside.txt")
    names = sorted(str(p.relative_to(root)) for p in iter_candidates(root))
    assert names == ["a.txt", "inside-link.txt", "név\nwith newline.txt", "sub/b.txt"]


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "drops"
    make_tree(root, tmp_path / "outside.txt")
    assert not is_candidate(root / "escape.txt", root)
    assert not is_candidate(tmp_path / "outside.txt", root)


def test_a_single_file_path_is_taken_as_given(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("x")
    assert list(iter_candidates(path)) == [path]


def test_oversized_file_is_hashed_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("wb") as handle:
        handle.truncate(10 * 1024 * 1024)  # sparse
    read = read_file(path, max_bytes=1024)
    assert read.reason is DropReason.TOO_LARGE
    assert read.data is None
    assert read.size == 10 * 1024 * 1024
    assert read.sha256 and len(read.sha256) == 64


@pytest.mark.parametrize("written", [3000, 5000])
def test_a_file_that_grows_after_its_stat_is_read_whole_up_to_the_limit(tmp_path: Path, written: int) -> None:
    path = tmp_path / "growing.txt"  # a FIFO: its stat says 0 bytes, and the writer's bytes come after
    os.mkfifo(path)
    writer = threading.Thread(target=path.write_bytes, args=(b"x" * written,))
    writer.start()
    read = read_file(path, max_bytes=4096)
    writer.join(timeout=5)
    assert read.data == b"x" * min(written, 4097)  # one byte over the limit says it is too large


def test_vanished_file_is_reported_not_raised(tmp_path: Path) -> None:
    read = read_file(tmp_path / "gone.txt", max_bytes=1024)
    assert read.vanished and read.sha256 is None


def test_the_walk_takes_the_same_files_sorted_or_not_and_from_a_subfolder(tmp_path: Path) -> None:
    root = tmp_path / "drops"
    make_tree(root, tmp_path / "outside.txt")
    (root / "sub" / "deeper").mkdir()
    (root / "sub" / "deeper" / "c.txt").write_text("x")
    (root / "linked-dir").symlink_to(root / "sub")  # a symlinked folder is not walked into
    walked = [path for path, _ in scan_tree(str(root))]
    by_walk = [str(p) for p in iter_candidates(root)]
    assert sorted(walked) == sorted(by_walk)
    assert by_walk == [str(root / n) for n in ("a.txt", "inside-link.txt", "név\nwith newline.txt", "sub/b.txt",
                                                "sub/deeper/c.txt")]
    assert sorted(p for p, _ in scan_tree(str(root), str(root / "sub"))) == [str(root / "sub/b.txt"),
                                                                            str(root / "sub/deeper/c.txt")]
    assert list(scan_tree(str(root), str(root / ".hidden-dir"))) == []


def test_candidate_stat_is_one_lstat_for_a_plain_file(tmp_path: Path) -> None:
    root = tmp_path / "drops"
    make_tree(root, tmp_path / "outside.txt")
    stat = candidate_stat(str(root / "a.txt"), str(root))
    assert stat is not None and stat.st_size == (root / "a.txt").stat().st_size
    link = candidate_stat(str(root / "inside-link.txt"), str(root))
    assert link is not None and link.st_size == stat.st_size  # what the link leads to
    for name in ("escape.txt", "x.tmp", ".hidden-dir/c.txt", "sub", "missing.txt"):
        assert candidate_stat(str(root / name), str(root)) is None, name
    assert candidate_stat(str(tmp_path / "outside.txt"), str(root)) is None


def test_a_file_that_cannot_be_read_is_a_rejection_that_says_why(tmp_path: Path) -> None:
    (tmp_path / "now-a-folder.txt").mkdir()
    read = read_file(tmp_path / "now-a-folder.txt", 1024)
    assert read.reason is DropReason.UNREADABLE and read.data is None and read.sha256 is None
    assert read.error is not None and "IsADirectoryError" in read.error


def test_a_name_that_is_not_utf8_is_stored_escaped_with_its_bytes_kept(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.txt")  # latin-1 bytes, as a Windows share might hand them over
    assert stored_path(f"/drops/{name}") == "/drops/caf\\xe9.txt"
    assert raw_path(f"/drops/{name}") == b"/drops/caf\xe9.txt"
    assert raw_path("/drops/café.txt") is None and stored_path("/drops/café.txt") == "/drops/café.txt"


def test_fifos_are_skipped_once_with_a_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "drops"
    root.mkdir()
    os.mkfifo(root / "pipe.txt")
    (root / "a.txt").write_text("date 2020-01-01 T\nbody\n")
    with caplog.at_level(logging.INFO):
        assert [Path(p).name for p, _ in scan_tree(str(root))] == ["a.txt"]
        assert candidate_stat(str(root / "pipe.txt"), str(root)) is None
    assert caplog.text.count("skipped: a FIFO, not a file") == 1
