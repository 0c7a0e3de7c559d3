"""Fixtures of the fault tests: the private servers for the session and a fresh Rig per test (servers.py,
corpus.py and rig.py hold the rest)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.migrate import upgrade_to_head
from tests.faults.rig import Rig
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.support import scratch_database


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


@pytest.fixture
def rig(request: pytest.FixtureRequest, private_postgres: PrivatePostgres, private_redis: PrivateRedis,
        tmp_path: Path) -> Iterator[Rig]:
    private_postgres.ensure_running()
    if not private_redis.answers():
        private_redis.start()
    private_redis.client().flushall()  # nothing left over from an earlier test
    with scratch_database(private_postgres.uri(), f"faults_{uuid.uuid4().hex[:8]}") as url:
        rig = Rig(request.node.name, private_postgres, private_redis, tmp_path, url)
        try:
            upgrade_to_head(url)
            yield rig
        finally:
            try:
                rig.stop_all()
            finally:
                rig.close()
                private_postgres.ensure_running()  # the database is dropped next
                if not private_redis.answers():
                    private_redis.start()
