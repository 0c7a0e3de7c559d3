"""Pooled connections that PostgreSQL dropped (a restart, an operator's pg_terminate_backend) are replaced:
pinged before use when they sat idle, and discarded together when one fails in use."""

import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared import db

pytestmark = pytest.mark.integration


def pids_of(engine, count: int) -> set[int]:
    """The backends of the pool's `count` connections (all checked out at once, then checked in)."""
    conns = [engine.connect() for _ in range(count)]
    try:
        return {conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in conns}
    finally:
        for conn in conns:
            conn.close()


def terminate(database_url: str, pids: set[int]) -> None:
    with psycopg.connect(db.libpq_url(db.normalise_url(database_url)), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid", (list(pids),))


def test_an_idle_connection_that_died_is_replaced_before_use(database_url: str) -> None:
    engine = db.create_db_engine(database_url, pool_size=2)
    try:
        dead = pids_of(engine, 2)
        terminate(database_url, dead)
        time.sleep(db.IDLE_PING_S + 0.2)
        assert not pids_of(engine, 2) & dead  # pinged on checkout, found dead, replaced: no error
    finally:
        engine.dispose()


def test_a_connection_that_died_while_busy_fails_once_and_the_pool_starts_afresh(database_url: str) -> None:
    engine = db.create_db_engine(database_url, pool_size=2)
    try:
        dead = pids_of(engine, 2)
        terminate(database_url, dead)
        with pytest.raises(DBAPIError) as failed, engine.connect() as conn:  # checked in just now: not pinged
            conn.execute(text("SELECT 1"))
        assert failed.value.connection_invalidated
        assert not pids_of(engine, 2) & dead  # the other dead one was discarded with it
    finally:
        engine.dispose()
