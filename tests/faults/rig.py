"""One fault test's system: a fresh database on the private servers, the service processes, the faults done
to them, and the checks every test ends with (Rig.verify).

Services are real `watcher`, `worker`, `storage` and `enricher` processes (tests.support.ServiceProcess); a
crash is SIGKILL to the service's main process and to every child of it (the Celery pool), as when a
container dies. Rig.verify: `newsflow audit` passes, the stored articles are exactly the distinct texts
dropped (parsed in this process), none twice, and every dropped (path, content) has one terminal drop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy import text

from shared.db import create_db_engine, create_session_factory
from shared.queues import Queue
from tests.faults.corpus import MAX_BYTES, DropFile, Feeder, expected_hashes
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.support import ROOT, ServiceProcess, TestServers, write_atomically

# Short enough that the reconciler recovers lost messages within a test.
LEASE_S = 10
QUEUES = (Queue.PARSE.value, Queue.STORE.value)


@dataclass
class Fault:
    at: float  # time.time() when it happened
    in_flight: str


class Rig:
    """A fresh database on the private servers, the service processes, and the checks every test ends with."""

    def __init__(self, name: str, pg: PrivatePostgres, broker: PrivateRedis, root: Path, database_url: str) -> None:
        self.name = name
        self.pg = pg
        self.broker = broker
        self.database_url = database_url
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
                                  f"messages: {broker[Queue.PARSE]} parse + {broker[Queue.STORE]} store "
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
