"""`newsflow up` runs every service on this machine, restarts one that dies, and stops them all on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import ROOT, TestServers, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration

SEED = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"
WIKINEWS = ROOT / "tests" / "data" / "wikinews"


def service_tree(up: subprocess.Popen[bytes], service: str) -> list[psutil.Process]:
    """The service's main process under `up`, and its pool."""
    [main] = [p for p in psutil.Process(up.pid).children() if f"services.{service}" in " ".join(p.cmdline())]
    return [main, *main.children(recursive=True)]


def wait_for_text(path: Path, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{path.read_text(errors='replace')[-3000:]}"
        time.sleep(0.2)


def test_up_ingests_restarts_a_killed_service_and_stops_cleanly(servers: TestServers, clean_db: None, sessions,
                                                                drop_dir: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "up.log"
    log = log_path.open("wb")
    env = {**os.environ, **servers.env, "NEWSFLOW_WORKER__CONCURRENCY": "1"}
    up = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--drop", str(drop_dir)], env=env, cwd=ROOT,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        write_atomically(drop_dir / "a.txt", SEED.read_bytes())
        [drop] = wait_for_drops(sessions, 1, timeout_s=60)
        assert drop.status.value == "stored"

        killed = service_tree(up, "storage")
        for process in killed:
            process.kill()
        psutil.wait_procs(killed, timeout=10)
        wait_for_text(log_path, "storage exited with status -9; restarting it")
        wait_for_text(log_path, "storage restarted")
        write_atomically(drop_dir / "b.txt", next(iter(sorted(WIKINEWS.glob("*.txt")))).read_bytes())
        drops = wait_for_drops(sessions, 2, timeout_s=60)
        assert [d.status.value for d in drops] == ["stored", "stored"]
        assert up.poll() is None
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert code == 0, log_path.read_text()
