"""Only Alembic changes the schema: the migrated database must match the models exactly, and a service whose
database is at another revision says which one it needs."""

import os

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import create_engine

from shared.db import normalise_url
from shared.health import readiness
from shared.migrate import head_revision, upgrade_to_head
from shared.models import Base
from shared.runtime import Runtime
from tests.conftest import ADMIN_URL
from tests.support import scratch_database

pytestmark = pytest.mark.integration


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations drifted; add an Alembic revision: {diff}"


def test_readiness_names_the_revision_this_code_needs(servers) -> None:
    with scratch_database(ADMIN_URL, f"newsflow_test_behind_{os.getpid()}") as url:
        upgrade_to_head(url)
        runtime = Runtime(servers.settings().model_copy(update={"database_url": SecretStr(url)}))
        assert readiness(runtime) == []
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0008'")
        assert readiness(runtime) == [f"schema at revision 0008, this code needs {head_revision()}: run "
                                      "`newsflow migrate`"]
        assert head_revision() != "0008"
