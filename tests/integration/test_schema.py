"""Only Alembic changes the schema: the migrated database must match the models exactly."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from shared.db import normalise_url
from shared.models import Base

pytestmark = pytest.mark.integration


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations drifted; add an Alembic revision: {diff}"
