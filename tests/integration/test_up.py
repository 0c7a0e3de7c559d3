"""`newsflow up` runs every service on this machine and stops them all on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, TestServers, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration


def test_up_ingests_a_dropped_file_and_stops_cleanly(servers: TestServers, clean_db: None, sessions,
                                                     drop_dir: Path, tmp_path: Path) -> None:
    log = (tmp_path / "up.log").open("wb")
    env = {**os.environ, **servers.env, "NEWSFLOW_WORKER__CONCURRENCY": "1"}
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--drop", str(drop_dir)], env=env, cwd=ROOT,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        write_atomically(drop_dir / "a.txt", (ROOT / "seeds" / "000_6488bdc6352e6c22.txt").read_bytes())
        [drop] = wait_for_drops(sessions, 1, timeout_s=60)
        assert drop.status.value == "stored"
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert code == 0, (tmp_path / "up.log").read_text()
