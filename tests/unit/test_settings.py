"""Settings come from NEWSFLOW_ variables; secrets stay out of logs."""

from pathlib import Path

import pytest

from shared.db import normalise_url, redact_url
from shared.errors import ConfigurationError
from shared.settings import Settings


def test_nested_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_WATCHER__SETTLE_S", "0.5")
    monkeypatch.setenv("NEWSFLOW_DROP_DIRS", '["/a", "/b"]')
    monkeypatch.setenv("NEWSFLOW_DATABASE_URL", "postgresql://u:pw@h/db")
    settings = Settings()
    assert settings.watcher.settle_s == 0.5
    assert [str(p) for p in settings.drop_dirs] == ["/a", "/b"]
    assert "pw" not in repr(settings)
    assert settings.embedded  # the broker URL is still unset


@pytest.mark.parametrize(("value", "folders"), [
    ("/data/drops", ["/data/drops"]),  # as anyone writes it first
    ("/data/a:/data/b", ["/data/a", "/data/b"]),  # os.pathsep, like PATH
    ('["/data/a", "/data/b"]', ["/data/a", "/data/b"]),  # JSON, as before
])
def test_drop_dirs_take_a_path_a_list_or_json(monkeypatch: pytest.MonkeyPatch, value: str, folders: list[str]) -> None:
    monkeypatch.setenv("NEWSFLOW_DROP_DIRS", value)
    assert [str(p) for p in Settings().drop_dirs] == folders


def test_drop_dirs_naming_no_folder_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSFLOW_DROP_DIRS", " ")
    with pytest.raises(ValueError, match="drop_dirs"):
        Settings()


@pytest.mark.parametrize("url", [
    "postgresql://user:s3cr%40t@db:5432/newsflow",
    "redis://:s3cr3t@redis:6379/0",
    "amqp://guest:s3cr3t@rabbit:5672//",
])
def test_redacted_urls_hide_the_password(url: str) -> None:
    assert "s3cr" not in redact_url(url)
    assert "***" in redact_url(url)


def test_urls_use_psycopg3() -> None:
    assert normalise_url("postgres://u@h/db").startswith("postgresql+psycopg://")


def test_urls_come_from_files_and_the_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "database_url").write_text("postgresql://u:from-file@h/db\n")
    (tmp_path / "broker_url").write_text("redis://:from-file@r:6379/0")
    monkeypatch.setenv("NEWSFLOW_DATABASE_URL_FILE", str(tmp_path / "database_url"))
    monkeypatch.setenv("NEWSFLOW_BROKER_URL_FILE", str(tmp_path / "broker_url"))
    monkeypatch.delenv("NEWSFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEWSFLOW_BROKER_URL", raising=False)
    settings = Settings()
    assert settings.require_urls() == ("postgresql://u:from-file@h/db", "redis://:from-file@r:6379/0")
    monkeypatch.setenv("NEWSFLOW_DATABASE_URL", "postgresql://u:from-env@h/db")
    assert Settings().require_urls()[0] == "postgresql://u:from-env@h/db"


def test_an_unreadable_url_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEWSFLOW_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="NEWSFLOW_DATABASE_URL_FILE"):
        Settings()
