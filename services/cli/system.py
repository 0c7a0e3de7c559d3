"""What every command stands on: the servers (embedded when no URL is set) and local services."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from shared.celery_app import wait_for_nodes
from shared.db import redact_url
from shared.embedded import EmbeddedServers
from shared.enrichment import reconcile_enrichment
from shared.ledger import reconcile
from shared.logging import setup_logging
from shared.migrate import upgrade_to_head
from shared.processes import Supervisor, child_env
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


@dataclass(frozen=True)
class Command:
    """What a command runs on: its settings (with the servers' URLs), the servers, the runtime."""

    settings: Settings
    servers: EmbeddedServers
    runtime: Runtime

    def local_processes(self, asked: int | None, default: int) -> int:
        """`--workers`: as asked; else `default` with embedded servers, 0 against a running system."""
        if asked is not None:
            return asked
        return default if self.servers.postgres or self.servers.redis else 0


@contextmanager
def command(*, log_level: str | None = None, drop_dirs: Sequence[Path] = ()) -> Iterator[Command]:
    """Every command's preamble, one way: settings, logging, the servers (embedded where no URL is set)
    migrated to the latest schema, and after a broker that came up empty every unfinished drop and
    enrichment sent again."""
    settings = Settings()
    if drop_dirs:
        settings = settings.model_copy(update={"drop_dirs": list(drop_dirs)})
    setup_logging("cli", level=log_level or settings.log_level, json_lines=settings.log_json)
    with system(settings) as (settings, servers):
        runtime = Runtime(settings)
        if servers.fresh_broker:
            resend_all(runtime)
        yield Command(settings, servers, runtime)


@contextmanager
def local_services(cmd: Command, workers: int, *, log_level: str = "WARNING", quiet: bool = True
                   ) -> Iterator[Supervisor]:
    """A command's own services: with `workers` > 0, storage, worker and enricher started and answering;
    all stopped (warm shutdown) on the way out. Their metrics ports are free ones (a system running on this
    host keeps the defaults)."""
    env = child_env(*cmd.settings.require_urls(), {"NEWSFLOW_LOG_LEVEL": log_level, "NEWSFLOW_METRICS__PORT": "0"})
    with Supervisor(env, quiet=quiet) as supervisor:
        if workers:
            start_local_services(supervisor, workers)
            wait_for_nodes(cmd.runtime.celery, len(supervisor.children), alive=lambda: not supervisor.dead())
        yield supervisor
