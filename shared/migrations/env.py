"""Alembic environment: the URL comes from the caller's Config, never from a file or os.environ."""

from alembic import context
from sqlalchemy import create_engine, pool

from shared.db import normalise_url
from shared.models import Base

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "set sqlalchemy.url (shared/migrate.py does)"
    engine = create_engine(normalise_url(url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
