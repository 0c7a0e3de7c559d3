"""Test helpers: real service processes and waiting on the ledger."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shared.celery_app import create_celery, wait_for_nodes
from shared.migrate import upgrade_to_head
from shared.models import Drop
from shared.records import TERMINAL_STATUSES
from shared.settings import Settings

ROOT = Path(__file__).parents[1]
START_TIMEOUT_S = 60.0


@dataclass
class TestServers:
    __test__ = False  # a fixture value, not a test class

    env: dict[str, str]
    logs: Path

    def settings(self) -> Settings:
        return Settings(
            database_url=SecretStr(self.env["NEWSFLOW_DATABASE_URL"]),
            broker_url=SecretStr(self.env["NEWSFLOW_BROKER_URL"]),
            pipeline={"max_bytes": int(self.env["NEWSFLOW_PIPELINE__MAX_BYTES"]), "batch_wait_s": 0.1},
            watcher={"settle_s": 0.5, "rescan_interval_s": 1, "poll_interval_s": 0.1},
        )

    def wait_for_workers(self, expected: int) -> None:
        """Until `expected` Celery nodes answer a ping (worker and storage each count as one)."""
        wait_for_nodes(create_celery(self.env["NEWSFLOW_BROKER_URL"]), expected, timeout_s=START_TIMEOUT_S)


class ServiceProcess:
    """One newsflow service as a child process, its output in a log file."""

    def __init__(self, service: str, servers: TestServers, *args: str, env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.service = service
        self.argv = [*prefix, sys.executable, "-m", f"services.{service}", *args]
        self.env = {**os.environ, **servers.env, **(env or {})}
        self.log_path = servers.logs / f"{service}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, needle: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.log():
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.service} exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.service} never logged {needle!r}:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """A fresh database `name` on the server `admin_url` connects to (one a crashed run left is dropped
    first), dropped with its connections on the way out; yields its URL. For tests and benchmarks alike."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def unavailable(message: str) -> NoReturn:
    """What a test needs is missing here: it fails under CI (where .ci/run provides everything) and skips
    elsewhere, saying what is missing."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def migrated_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A scratch database migrated to the head revision; yields its URL."""
    try:
        psycopg.connect(admin_url, autocommit=True, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        unavailable(f"PostgreSQL is not reachable: {e}")
    with scratch_database(admin_url, f"{prefix}_{uuid.uuid4().hex[:8]}") as url:
        upgrade_to_head(url)
        yield url


def promtool() -> str:
    """The promtool binary (NEWSFLOW_PROMTOOL, or on PATH)."""
    found = os.environ.get("NEWSFLOW_PROMTOOL") or shutil.which("promtool")
    if found is None:
        unavailable("promtool not found (Debian's prometheus package; .ci/run installs it)")
    return found


def wait_for_drops(sessions: sessionmaker[Session], count: int, timeout_s: float = 120.0) -> list[Drop]:
    """Until at least `count` drops exist and all of them are terminal; returns them by path."""
    deadline = time.monotonic() + timeout_s
    while True:
        with sessions() as session:
            drops = list(session.execute(select(Drop).order_by(Drop.path, Drop.id)).scalars())
        if len(drops) >= count and all(d.status in TERMINAL_STATUSES for d in drops):
            return drops
        if time.monotonic() > deadline:
            states = [(d.path, d.status.value) for d in drops]
            raise TimeoutError(f"expected {count} terminal drops, have: {states}")
        time.sleep(0.1)


def truncate_all(sessions: sessionmaker[Session]) -> None:
    """Empty every table but the heartbeats of the service processes, which stay up between tests."""
    with sessions() as session, session.begin():
        session.execute(text("TRUNCATE drops, articles, lsh_buckets, blobs, entities, api_keys, operator_actions, "
                             "article_changes "
                             "RESTART IDENTITY CASCADE"))


def write_atomically(path: Path, data: bytes) -> None:
    """How a well-behaved producer drops a file: write under a temporary name, then rename in."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.rename(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def newsflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A `newsflow` command run to its end against these servers."""
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)


def new_key(env: dict[str, str], role: str, name: str) -> str:
    created = newsflow(env, "keys", "create", "--role", role, "--name", name)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]  # the key alone on the last line


@contextmanager
def running_api(servers: TestServers, env: dict[str, str] | None = None) -> Iterator[str]:
    """An api process on a free port, answering; yields its base URL and stops it on the way out."""
    port = free_port()
    with ServiceProcess("api", servers, "--port", str(port), env=env) as api:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert api.process is not None and api.process.poll() is None, api.log()
                assert time.monotonic() < deadline, api.log()
                time.sleep(0.2)
        yield base
