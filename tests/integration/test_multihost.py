"""Scale-out to a second host: the worker and the enricher run on host B, drops are written on host A.

Host A is this machine's root namespace; host B is a network namespace of its own joined to it by a veth pair,
whose processes also get a mount and UTS namespace: their own hostname, and an empty tmpfs over the folder
that holds the drops and the servers' data, so they cannot read a file of host A. PostgreSQL and Redis are
private servers bound to host A's end of the link only, and host B has no route but that link: everything B
does goes over it. Host A runs storage and the watcher and no worker, so every drop has to be parsed on B.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import psutil
import psycopg
import pytest

from services.worker.parsing import parse_drop
from shared.celery_app import create_celery
from shared.records import ParsedArticle
from tests import netns
from tests.support import ROOT, unavailable, write_atomically

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

B_HOSTNAME = "newsflow-host-b"
WIKINEWS = ROOT / "tests" / "data" / "wikinews"
EMBEDDED_DATA = ROOT / ".newsflow"
ARTICLES = 10
MAX_BYTES = 256 * 1024
START_TIMEOUT_S = 60.0
DONE_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0
# Short intervals keep the test quick; the lease is long enough that no drop is re-sent while B starts.
SETTINGS = {
    "NEWSFLOW_WATCHER__SETTLE_S": "0.3",
    "NEWSFLOW_WATCHER__RESCAN_INTERVAL_S": "1",
    "NEWSFLOW_WATCHER__POLL_INTERVAL_S": "0.1",
    "NEWSFLOW_PIPELINE__BATCH_WAIT_S": "0.1",
    "NEWSFLOW_PIPELINE__MAX_BYTES": str(MAX_BYTES),
    "NEWSFLOW_PIPELINE__LEASE_S": "60",
    "NEWSFLOW_LOG_LEVEL": "INFO",
}


def refuse(reason: str) -> NoReturn:
    unavailable(f"cannot make a second host (network, mount and UTS namespaces): {reason}")


@dataclass
class Hosts:
    """Both hosts: the link, the private servers on A's address, and the service processes of each host."""

    root: Path  # drops, server data and logs: hidden from host B
    link: netns.Link
    postgres: netns.BoundPostgres
    redis: netns.BoundRedis
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def drop_dir(self) -> Path:
        return self.root / "drops"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def hidden(self) -> list[Path]:
        """What host B must not see: this test's folder, and the embedded servers' data folder of `make run`
        if there is one (the project and its venv stay visible: B runs that code)."""
        return [self.root, *(p for p in (EMBEDDED_DATA,) if p.is_dir())]

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def _service_env(self, service: str) -> dict[str, str]:
        # libpq names each connection after its service: pg_stat_activity then shows where each one comes from.
        return {**self.env, "PGAPPNAME": f"newsflow-{service}"}

    def start_on_a(self, service: str, *args: str) -> subprocess.Popen[bytes]:
        with self.log(service).open("ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "services.cli", service, *args],
                                       env=self._service_env(service), cwd=ROOT, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
        self.processes[service] = process
        return process

    def start_on_b(self, service: str, *args: str) -> subprocess.Popen[bytes]:
        # HOME and TMPDIR inside B's tmpfs: B has no other writable place of A's.
        env = {**self._service_env(service), "HOME": str(self.root), "TMPDIR": str(self.root)}
        process = netns.start_on_b(self.link, B_HOSTNAME, self.hidden,
                                   [sys.executable, "-m", "services.cli", service, *args], env,
                                   self.log(service), ROOT)
        self.processes[service] = process
        return process

    def newsflow(self, *args: str) -> str:
        """A newsflow command on host A; its standard output."""
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        assert done.returncode == 0, f"newsflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def query(self, sql: str) -> list[tuple]:
        with psycopg.connect(self.env["NEWSFLOW_DATABASE_URL"], connect_timeout=5) as conn:
            return conn.execute(sql).fetchall()

    def assert_running(self) -> None:
        exited = {s: p.returncode for s, p in self.processes.items() if p.poll() is not None}
        assert not exited, f"services exited: {exited}\n{self.tails()}"

    def tails(self) -> str:
        return "\n".join(f"===== {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.logs.glob("*.log")))

    def stop_services(self) -> None:
        for process in reversed(self.processes.values()):
            netns.stop_group(process)


def _servers(stack: contextlib.ExitStack, root: Path, link: netns.Link) -> tuple[netns.BoundPostgres,
                                                                                   netns.BoundRedis]:
    postgres = netns.BoundPostgres(root / "postgres", link.a_addr, link.subnet)
    stack.callback(postgres.stop)
    postgres.start()
    redis = netns.BoundRedis(root / "redis", link.a_addr)
    stack.callback(redis.stop)
    redis.start()
    with psycopg.connect(postgres.url(), autocommit=True, connect_timeout=5) as admin:
        admin.execute('CREATE DATABASE "newsflow"')
    return postgres, redis


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """Link, servers and an empty, migrated database; every process, the namespace, the veth pair and the
    folder are gone afterwards, whatever happened."""
    if os.geteuid() != 0:
        refuse("needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    # Not under pytest's basetemp: a pytest run resets /tmp/pytest-of-<user> to 0700, and PostgreSQL runs as
    # another OS user when we are root.
    root = Path(tempfile.mkdtemp(prefix="newsflow-multihost-"))
    try:
        with contextlib.ExitStack() as stack:
            try:
                link = stack.enter_context(netns.Link.up(os.getpid()))
            except netns.Refused as e:
                refuse(str(e))
            postgres, redis = _servers(stack, root, link)
            hosts = Hosts(root, link, postgres, redis)
            stack.callback(hosts.stop_services)  # before the servers and the link go
            hosts.drop_dir.mkdir()
            hosts.logs.mkdir()
            # Host A's services too reach the servers at A's link address: nothing uses 127.0.0.1.
            hosts.env = {**os.environ, **SETTINGS, "NEWSFLOW_DATABASE_URL": postgres.url("newsflow"),
                         "NEWSFLOW_BROKER_URL": redis.url()}
            hosts.newsflow("migrate")
            yield hosts
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the run ----------------------------------------------------------------------------------------------

def start_services(hosts: Hosts) -> list[str]:
    """Storage on A, worker and enricher on B, then the watcher on A; the Celery node names that answer."""
    hosts.start_on_a("storage")
    hosts.start_on_b("worker", "--concurrency", "1")
    hosts.start_on_b("enricher", "--concurrency", "1")
    names = wait_for_nodes(hosts, 3)
    watcher = hosts.start_on_a("watcher", "--drop", str(hosts.drop_dir))
    wait_for_log(hosts, "watcher", watcher, "watching")
    return names


def wait_for_nodes(hosts: Hosts, count: int) -> list[str]:
    app = create_celery(hosts.env["NEWSFLOW_BROKER_URL"])
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        hosts.assert_running()
        names = sorted(name for reply in app.control.ping(timeout=0.5) for name in reply)
        if len(names) >= count:
            return names
        assert time.monotonic() < deadline, f"only {names} answered\n{hosts.tails()}"


def wait_for_log(hosts: Hosts, service: str, process: subprocess.Popen[bytes], needle: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while needle not in hosts.log(service).read_text(errors="replace"):
        assert process.poll() is None, f"{service} exited\n{hosts.tails()}"
        assert time.monotonic() < deadline, f"{service} never logged {needle!r}\n{hosts.tails()}"
        time.sleep(0.05)


def drop_files(hosts: Hosts) -> dict[str, bytes]:
    """ARTICLES distinct wikinews texts, a copy of the first under another name (a duplicate) and an empty file
    (rejected), each written the way a producer does: a temporary name, then a rename."""
    sources = sorted(WIKINEWS.glob("*.txt"))[:ARTICLES]
    files = {path.name: path.read_bytes() for path in sources}
    files["copy_of_" + sources[0].name] = sources[0].read_bytes()
    files["empty.txt"] = b""
    for name, data in files.items():
        write_atomically(hosts.drop_dir / name, data)
    return files


def wait_until(hosts: Hosts, what: str, done_sql: str) -> None:
    deadline = time.monotonic() + DONE_TIMEOUT_S
    while not hosts.query(done_sql)[0][0]:
        hosts.assert_running()
        assert time.monotonic() < deadline, f"not {what} within {DONE_TIMEOUT_S:.0f} s\n{hosts.tails()}"
        time.sleep(0.2)


def wait_for_pipeline(hosts: Hosts, drops: int) -> None:
    wait_until(hosts, f"{drops} terminal drops",
               f"SELECT count(*) = {drops} AND bool_and(status <> 'queued') FROM drops")
    wait_until(hosts, "every article enriched",
               "SELECT count(*) > 0 AND bool_and(enrichment_version IS NOT NULL) FROM articles")


def expected_hashes(files: dict[str, bytes]) -> set[str]:
    """The distinct texts among the files, by content hash (the parser as a library, in this process)."""
    parsed = (parse_drop(data, max_bytes=MAX_BYTES) for data in files.values())
    return {p.content_hash for p in parsed if isinstance(p, ParsedArticle)}


def export(hosts: Hosts, kind: str) -> list[dict]:
    return [json.loads(line) for line in hosts.newsflow("export", kind, "--jsonl").splitlines() if line.strip()]


# --- the checks -------------------------------------------------------------------------------------------

def check_isolation(hosts: Hosts, pid: int) -> None:
    """Process `pid` runs on host B: namespaces of its own, A's folder empty there, no route but the link."""
    for kind in ("net", "mnt", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}"), kind
    seen_from_b = Path(f"/proc/{pid}/root") / hosts.root.relative_to("/")  # procfs: the path in B's mounts
    assert seen_from_b.is_dir() and not (seen_from_b / "drops").exists(), "host B sees host A's files"
    assert not (seen_from_b / "postgres").exists() and not (seen_from_b / "redis").exists()
    routes = hosts.link.routes_on_b()
    assert not [r for r in routes if r["dst"] == "default" or "gateway" in r], routes
    main = [(r["dst"], r["dev"]) for r in routes if r.get("table") != "local"]
    assert main == [(str(hosts.link.subnet), hosts.link.b_if)], f"host B has other routes: {routes}"
    peers = netns.peers(pid)  # every socket in B's namespace, connected to something
    assert peers == {hosts.link.a_addr}, f"host B talks to {peers}"


def check_servers(hosts: Hosts) -> None:
    """Both servers listen on A's link address and nowhere else; B's connections arrive from B's address."""
    for server in (hosts.postgres, hosts.redis):
        assert server.process is not None
        listening = {c.laddr.ip for c in psutil.Process(server.process.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {hosts.link.a_addr}, listening
        assert netns.refused("127.0.0.1", server.port)
    clients = hosts.query("SELECT application_name, host(client_addr) FROM pg_stat_activity "
                          "WHERE application_name LIKE 'newsflow-%'")
    by_service = {app: {addr for a, addr in clients if a == app} for app, _ in clients}
    assert by_service.get("newsflow-worker") == {hosts.link.b_addr}, clients
    assert by_service.get("newsflow-storage") == {hosts.link.a_addr}, clients


def check_lineage(drops: list[dict], articles: list[dict], a_name: str) -> None:
    """Every drop was discovered on A and parsed on B, in the drop records and in each article's lineage."""
    assert drops and {(d["host"], d["parsed_by"]) for d in drops} == {(a_name, B_HOSTNAME)}, drops
    lineage = [entry for a in articles for entry in a["drops"]]
    assert len(lineage) == sum(d["status"] in ("stored", "duplicate") for d in drops)
    assert {(e["host"], e["parsed_by"]) for e in lineage} == {(a_name, B_HOSTNAME)}, lineage


def check_articles(articles: list[dict], expected: set[str]) -> None:
    hashes = [a["content_hash"] for a in articles]
    assert len(hashes) == len(set(hashes)) == len(expected) and set(hashes) == expected
    unenriched = [a["id"] for a in articles if a["enrichment_version"] is None or a["language"] is None]
    assert not unenriched, f"articles not enriched: {unenriched}"


def test_worker_and_enricher_on_a_second_host(hosts: Hosts) -> None:
    start = time.monotonic()
    a_name = socket.gethostname()
    assert a_name != B_HOSTNAME
    nodes = start_services(hosts)
    assert [(n.split("-")[0], n.split("@")[1]) for n in nodes] == [
        ("enricher", B_HOSTNAME), ("storage", a_name), ("worker", B_HOSTNAME)], nodes
    before = hosts.link.packets()

    files = drop_files(hosts)
    wait_for_pipeline(hosts, len(files))

    # The ledger itself, then what consumers read of it.
    assert hosts.query("SELECT DISTINCT parsed_by FROM drops") == [(B_HOSTNAME,)]
    drops, articles = export(hosts, "drops"), export(hosts, "articles")
    assert len(drops) == len(files)
    statuses = Counter(d["status"] for d in drops)
    assert statuses == {"stored": ARTICLES, "duplicate": 1, "rejected": 1}, drops
    check_lineage(drops, articles, a_name)
    check_articles(articles, expected_hashes(files))
    for service in ("worker", "enricher"):
        check_isolation(hosts, hosts.processes[service].pid)
    check_servers(hosts)
    after = hosts.link.packets()
    assert after["rx"] > before["rx"] and after["tx"] > before["tx"], (before, after)
    hosts.assert_running()

    link = hosts.link
    print(f"\nMULTIHOST | host A {a_name} ({link.a_addr}, root namespace, veth {link.a_if}): PostgreSQL "
          f":{hosts.postgres.port} and Redis :{hosts.redis.port} bound there only, storage, watcher | "
          f"host B {B_HOSTNAME} ({link.b_addr}, netns {link.namespace}, veth {link.b_if}, own mount+UTS "
          f"namespaces, A's folder hidden): worker, enricher | only route {link.subnet}, B's sockets reach "
          f"{sorted(netns.peers(hosts.processes['worker'].pid))} only", flush=True)
    parsed_on_b = sum(d["parsed_by"] == B_HOSTNAME for d in drops)
    print(f"MULTIHOST | {len(drops)} drops written on {a_name}, {parsed_on_b} parsed on {B_HOSTNAME} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}); {len(articles)} articles stored, "
          f"{len(articles)} enriched on {B_HOSTNAME}; {after['rx'] - before['rx']} packets B->A and "
          f"{after['tx'] - before['tx']} A->B over the link meanwhile | {time.monotonic() - start:.1f} s", flush=True)
