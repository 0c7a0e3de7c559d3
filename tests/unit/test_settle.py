"""When a file counts as complete."""

from services.watcher.settle import SettleTracker


def test_file_is_ready_only_after_settling_unchanged() -> None:
    tracker = SettleTracker(settle_s=2.0)
    tracker.observe("a", size=10, mtime_ns=1, now=100.0)
    assert tracker.ready(101.9) == []
    assert tracker.ready(102.0) == ["a"]
    assert tracker.ready(200.0) == []  # handed out once


def test_a_change_restarts_the_clock() -> None:
    tracker = SettleTracker(settle_s=2.0)
    tracker.observe("a", size=10, mtime_ns=1, now=100.0)
    tracker.observe("a", size=20, mtime_ns=2, now=101.5)
    assert tracker.ready(103.0) == []
    tracker.observe("a", size=20, mtime_ns=2, now=103.0)
    assert tracker.ready(103.5) == ["a"]


def test_an_old_file_found_by_rescan_is_ready_at_once() -> None:
    tracker = SettleTracker(settle_s=2.0)
    tracker.observe("old", size=10, mtime_ns=1, now=100.0, age_s=3600)
    tracker.observe("fresh", size=10, mtime_ns=1, now=100.0, age_s=0.1)
    assert tracker.ready(100.0) == ["old"]


def test_renamed_in_is_ready_without_waiting() -> None:
    tracker = SettleTracker(settle_s=2.0)
    tracker.mark_renamed_in("b")
    assert tracker.ready(0.0) == ["b"]


def test_forgotten_files_never_become_ready() -> None:
    tracker = SettleTracker(settle_s=0.0)
    tracker.observe("gone", size=1, mtime_ns=1, now=0.0)
    tracker.forget("gone")
    assert tracker.ready(10.0) == []


def test_only_files_due_are_looked_at_again() -> None:
    tracker = SettleTracker(settle_s=2.0)
    tracker.observe("a", size=10, mtime_ns=1, now=100.0)
    tracker.observe("b", size=10, mtime_ns=1, now=101.0)
    assert tracker.due(102.5) == ["a"]
    tracker.observe("a", size=11, mtime_ns=2, now=102.5)  # it changed since: the clock restarts
    assert tracker.ready(103.0) == ["b"]
    assert tracker.ready(104.5) == ["a"]


def test_renamed_files_go_between_two_looks_at_the_files_being_written() -> None:
    tracker = SettleTracker(settle_s=2.0)
    tracker.observe("written", size=1, mtime_ns=1, now=0.0)
    tracker.mark_renamed_in("renamed")
    assert tracker.ready_renamed() == ["renamed"]
    assert tracker.ready_renamed() == []
    assert tracker.ready(5.0) == ["written"]
