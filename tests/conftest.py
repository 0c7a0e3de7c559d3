"""Fixtures for integration tests: a fresh PostgreSQL database migrated with Alembic, a Redis
database of its own, and real service processes (worker, storage, watcher) started as children.

PostgreSQL and Redis come from NEWSFLOW_TEST_DATABASE_ADMIN_URL / NEWSFLOW_TEST_BROKER_URL
(default: the machine's servers on 127.0.0.1). Unreachable servers skip the tests locally and
fail them when CI is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.db import create_db_engine, create_session_factory
from shared.settings import Settings
from tests.support import ServiceProcess, TestServers, migrated_database, truncate_all, unavailable

ROOT = Path(__file__).parents[1]
ADMIN_URL = os.environ.get("NEWSFLOW_TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("NEWSFLOW_TEST_BROKER_URL", "redis://127.0.0.1:6379/15")
TEST_MAX_BYTES = 256 * 1024
PIPELINE_NODES = 3  # worker, enricher, storage



@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with migrated_database(ADMIN_URL, "newsflow_test") as url:
        yield url


@pytest.fixture(scope="session")
def broker_url() -> str:
    try:
        redis.Redis.from_url(BROKER_URL, socket_timeout=3).flushdb()
    except redis.exceptions.ConnectionError as e:
        unavailable(f"Redis is not reachable: {e}")
    return BROKER_URL


@pytest.fixture(scope="session")
def servers(database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> TestServers:
    env = {
        "NEWSFLOW_DATABASE_URL": database_url,
        "NEWSFLOW_BROKER_URL": broker_url,
        "NEWSFLOW_WATCHER__SETTLE_S": "0.5",
        "NEWSFLOW_WATCHER__RESCAN_INTERVAL_S": "1",
        "NEWSFLOW_WATCHER__POLL_INTERVAL_S": "0.1",
        "NEWSFLOW_PIPELINE__MAX_BYTES": str(TEST_MAX_BYTES),
        "NEWSFLOW_PIPELINE__BATCH_WAIT_S": "0.1",
        "NEWSFLOW_LOG_LEVEL": "INFO",
    }
    return TestServers(env=env, logs=tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="session")
def settings(servers: TestServers) -> Settings:
    return servers.settings()


@pytest.fixture(scope="session")
def sessions(database_url: str):
    engine = create_db_engine(database_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def clean_db(sessions) -> None:
    """Every test starts from empty tables (the processes stay up between tests)."""
    truncate_all(sessions)


@pytest.fixture(scope="session")
def pipeline(servers: TestServers) -> Iterator[TestServers]:
    """Worker (two processes), enricher (one) and storage services, running for the whole test session."""
    worker = ServiceProcess("worker", servers, "--concurrency", "2")
    enricher = ServiceProcess("enricher", servers, "--concurrency", "1")
    storage = ServiceProcess("storage", servers)
    with worker, enricher, storage:
        servers.wait_for_workers(PIPELINE_NODES)
        yield servers


@pytest.fixture
def drop_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "drops"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(pipeline: TestServers, drop_dir: Path, clean_db: None) -> Iterator[ServiceProcess]:
    process = ServiceProcess("watcher", pipeline, "--drop", str(drop_dir))
    with process:
        process.wait_for_log("watching")
        yield process
