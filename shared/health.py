"""Readiness (SPEC section 7, "Health"): the database and the broker answer, and the schema is the one this
code expects. Asked afresh each time, so a service recovers by itself once they are back.

A probe must get an answer, not wait for one: a server that stops answering (frozen, or behind a network that
drops packets) would otherwise hold /readyz without limit, as neither libpq nor redis-py has a timeout of its
own, and each waiting probe would hold a thread of the service. Every step here gives up after ANSWER_TIMEOUT_S.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import psycopg

from shared.db import libpq_url

if TYPE_CHECKING:
    from shared.runtime import Runtime

# Per server. libpq counts whole seconds and takes 2 at least (connect_timeout).
ANSWER_TIMEOUT_S = 2


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


@cache
def schema_head() -> str | None:
    """The revision this code needs, read from its migrations when first asked (not at import: no I/O then, and
    alembic alone took a tenth of a second of every command's start)."""
    from shared.migrate import head_revision

    return head_revision()


def schema_revision(database_url: str) -> str | None:
    """The revision the database is at, on a connection of its own: a pooled one is pinged first, which waits
    without limit on a server that stopped answering, and a pool the tasks hold would keep the probe waiting
    for a checkout."""
    with psycopg.connect(libpq_url(database_url), connect_timeout=ANSWER_TIMEOUT_S, autocommit=True) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def check_broker(runtime: Runtime) -> None:
    """Connect to the broker once (no retry: the next probe is the retry), with every socket wait bounded."""
    timeouts = {"socket_connect_timeout": ANSWER_TIMEOUT_S, "socket_timeout": ANSWER_TIMEOUT_S}
    with runtime.celery.connection_for_write(connect_timeout=ANSWER_TIMEOUT_S, transport_options=timeouts) as conn:
        conn.ensure_connection(max_retries=0)


def readiness(runtime: Runtime) -> list[str]:
    """What keeps the service from working now; empty when ready."""
    problems = []
    try:
        current, needed = schema_revision(runtime.settings.require_urls()[0]), schema_head()
        if current != needed:
            problems.append(f"schema at revision {current}, this code needs {needed}: run `newsflow migrate`")
    except Exception as e:
        problems.append(f"database: {_first_line(e)}")
    try:
        check_broker(runtime)
    except Exception as e:
        problems.append(f"broker: {_first_line(e)}")
    return problems
