"""What every command stands on: the servers (embedded when no URL is set) and local services."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import SecretStr

from services.cli.processes import Supervisor
from shared.db import redact_url
from shared.embedded import EmbeddedServers
from shared.enrichment import reconcile_enrichment
from shared.ledger import reconcile
from shared.migrate import upgrade_to_head
from shared.runtime import Runtime
from shared.settings import Settings

log = logging.getLogger("newsflow")


@contextmanager
def system(settings: Settings) -> Iterator[tuple[Settings, EmbeddedServers]]:
    """The servers to use (embedded ones started when no URL is set), migrated to the latest schema."""
    database_url, broker_url = (u.get_secret_value() if u else None for u in (settings.database_url,
                                                                                 settings.broker_url))
    with EmbeddedServers(settings.data_dir, database_url=database_url, broker_url=broker_url) as servers:
        assert servers.database_url is not None and servers.broker_url is not None
        log.info("using database %s and broker %s", redact_url(servers.database_url),
                 redact_url(servers.broker_url))
        upgrade_to_head(servers.database_url)
        yield settings.model_copy(update={"database_url": SecretStr(servers.database_url),
                                          "broker_url": SecretStr(servers.broker_url)}), servers


def start_local_services(supervisor: Supervisor, workers: int, *, watcher: bool = False) -> None:
    supervisor.start("storage", "storage")
    supervisor.start("worker", "worker", "--concurrency", str(workers))
    supervisor.start("enricher", "enricher", "--concurrency", str(workers))
    if watcher:
        supervisor.start("watcher", "watcher")


def resend_all(runtime: Runtime) -> None:
    """After the broker came up empty (embedded Redis has no persistence): send every unfinished drop and
    every pending enrichment again; a message that was not lost after all finds its work done."""
    reconcile(runtime, all_queued=True)
    reconcile_enrichment(runtime, all_pending=True)
