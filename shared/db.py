"""Engine and session factories. Nothing connects at import time."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, CursorResult, Engine, any_, create_engine, event, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver whatever the URL names (postgres://, postgresql://)."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """An SQLAlchemy-style URL (postgresql+psycopg://) as libpq takes it."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def redact_url(url: str) -> str:
    """A URL fit for logs: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy-style URL (e.g. a broker URL): redact by hand
        scheme, sep, rest = url.partition("://")
        creds, at, host = rest.rpartition("@")
        if not at:
            return url
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else url


IDLE_PING_S = 1.0


def create_db_engine(url: str, *, pool_size: int = 5) -> Engine:
    engine = create_engine(
        normalise_url(url),
        pool_size=pool_size,
        hide_parameters=True,  # article text and bytes never reach an error message
    )
    ping_idle_connections(engine)
    return engine


def ping_idle_connections(engine: Engine) -> None:
    """A PostgreSQL restart leaves dead pooled connections behind: one that sat idle in the pool for over
    IDLE_PING_S is pinged on checkout and replaced if dead (SQLAlchemy's pool_pre_ping, but not on every
    checkout: a busy api paid a round trip per request). A connection checked in less than IDLE_PING_S ago
    that turns out dead fails its statement once, and that error discards every pooled connection."""

    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
        if time.monotonic() - record.info.get("checked_in_at", 0.0) > IDLE_PING_S:
            try:
                alive = engine.dialect.do_ping(dbapi_connection)
            except engine.dialect.loaded_dbapi.Error as e:
                raise DisconnectionError(str(e)) from e
            if not alive:
                raise DisconnectionError("ping failed")


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session, one transaction: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def execute_batch(session: Session, sql: str, params: Mapping[str, object]) -> CursorResult:
    """Run a statement that carries a whole batch in array parameters, written with psycopg's
    placeholders: `%(name)b` sends an array in binary, as it is; as text every string in it is escaped
    into an array literal, which was most of a storage batch's CPU (article bodies)."""
    return session.connection().exec_driver_sql(sql, dict(params))


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers, for a `%(name)s::bigint[]` parameter: for integers, text is
    cheaper to build than binary (psycopg packs a binary array element by element)."""
    return "{" + ",".join(map(str, values)) + "}"


def among(column: ColumnElement[int] | QueryableAttribute[int], ids: Iterable[int]) -> ColumnElement[bool]:
    """`column = ANY(ids)`, the ids in one `bigint[]` parameter. `column.in_(ids)` renders a parameter per id,
    which SQLAlchemy renders and psycopg and PostgreSQL parse again on every call: polling 3,200 drops ten times
    a second that way was most of `newsflow ingest --wait`'s CPU. Typed as an array, not text cast to one: a
    cast of text is evaluated per row, and the planner then neither hashes the ids nor counts them (a
    sequential scan comparing every row with every id: 750 ms for 3,200 ids)."""
    return column == any_(literal(list(ids), ARRAY(BigInteger)))


def seconds(value: float) -> timedelta:
    """A duration in seconds as PostgreSQL takes it: psycopg sends a timedelta as an interval, so SQL reads
    `now() + :lease` (or `now() - seconds(lease_s)` in SQLAlchemy) without building one in SQL."""
    return timedelta(seconds=value)
