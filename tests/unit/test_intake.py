"""Which files the watcher and `newsflow ingest` take, and how they are read."""

from pathlib import Path

from shared.intake import is_candidate, iter_candidates, read_file
from shared.records import RejectReason


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
    assert read.reason is RejectReason.TOO_LARGE
    assert read.data is None
    assert read.size == 10 * 1024 * 1024
    assert read.sha256 and len(read.sha256) == 64


def test_vanished_file_is_reported_not_raised(tmp_path: Path) -> None:
    read = read_file(tmp_path / "gone.txt", max_bytes=1024)
    assert read.vanished and read.sha256 is None
