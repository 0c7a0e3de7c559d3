"""Readiness (SPEC section 7, "Health"): the database and the broker answer, and the schema is the one this
code expects. Asked afresh each time, so a service recovers by itself once they are back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import text

from shared.migrate import head_revision

if TYPE_CHECKING:
    from shared.runtime import Runtime

HEAD = head_revision()


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def readiness(runtime: Runtime) -> list[str]:
    """What keeps the service from working now; empty when ready."""
    problems = []
    try:
        with runtime.sessions() as session:
            current = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if current != HEAD:
            problems.append(f"schema at revision {current}, this code needs {HEAD}: run `newsflow migrate`")
    except Exception as e:
        problems.append(f"database: {_first_line(e)}")
    try:
        with runtime.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as e:
        problems.append(f"broker: {_first_line(e)}")
    return problems
