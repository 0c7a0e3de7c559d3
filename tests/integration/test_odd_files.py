"""No file stops the watcher: names that are not UTF-8, files it may not read, FIFOs and folders named like
drops. The watcher runs without any capability (as the image's unprivileged user would: file permissions
apply to it), so a file with mode 000 really is unreadable to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text

from shared.models import Drop
from shared.records import DropStatus
from tests.support import ROOT, ServiceProcess, TestServers, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration

WIKINEWS = sorted((ROOT / "tests" / "data" / "wikinews").glob("*.txt"))
# Root without capabilities: permission bits apply (CAP_DAC_OVERRIDE is what lets root read a 000 file).
UNPRIVILEGED = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"] if os.geteuid() == 0 else []


def test_no_file_stops_the_watcher(pipeline: TestServers, drop_dir: Path, clean_db: None, sessions) -> None:
    if UNPRIVILEGED and shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the watcher without privileges")
    latin1 = os.fsencode(drop_dir) + b"/caf\xe9.txt"  # a name from a Windows share, not UTF-8
    with open(latin1, "wb") as handle:
        handle.write(WIKINEWS[0].read_bytes())
    locked = drop_dir / "locked.txt"
    locked.write_bytes(WIKINEWS[1].read_bytes())
    locked.chmod(0)
    os.mkfifo(drop_dir / "pipe.txt")
    (drop_dir / "folder.txt").mkdir()
    write_atomically(drop_dir / "folder.txt" / "inner.txt", WIKINEWS[2].read_bytes())

    with ServiceProcess("watcher", pipeline, "--drop", str(drop_dir), prefix=UNPRIVILEGED) as watcher:
        watcher.wait_for_log("watching")
        drops = wait_for_drops(sessions, 3, timeout_s=60)
        write_atomically(drop_dir / "after.txt", WIKINEWS[3].read_bytes())  # and it goes on taking files
        drops = wait_for_drops(sessions, 4, timeout_s=60)
        assert watcher.process is not None and watcher.process.poll() is None, watcher.log()
        log = watcher.log()

    by_name = {Path(d.path).name: d for d in drops}
    assert set(by_name) == {"caf\\xe9.txt", "locked.txt", "inner.txt", "after.txt"}, by_name
    assert by_name["caf\\xe9.txt"].status is DropStatus.STORED
    with sessions() as session:
        raw = session.execute(select(Drop.raw_path).where(Drop.id == by_name["caf\\xe9.txt"].id)).scalar_one()
    assert raw == latin1
    unreadable = by_name["locked.txt"]
    assert (unreadable.status, unreadable.reason) == (DropStatus.REJECTED, "unreadable")
    assert "Permission denied" in (unreadable.detail or "")
    assert by_name["inner.txt"].status is by_name["after.txt"].status is DropStatus.STORED
    assert "skipped: a FIFO, not a file" in log and "pipe.txt" in log

    locked.chmod(0o644)  # fixed: the operator replays it
    replayed = subprocess.run([sys.executable, "-m", "services.cli", "replay", "--reason", "unreadable",
                               "--workers", "0"], env={**os.environ, **pipeline.env}, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1 drops" in replayed.stdout
    with sessions() as session:
        again = session.execute(select(Drop).where(Drop.id == unreadable.id)).scalar_one()
        audit_rows = session.execute(text("SELECT count(*) FROM drops WHERE status = 'queued'")).scalar_one()
    assert again.status is DropStatus.STORED and again.sha256 is not None and audit_rows == 0
