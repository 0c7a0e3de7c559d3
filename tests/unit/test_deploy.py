"""docker-compose.yml and the image cannot be run here (no Docker engine), so check what they name."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from services.cli.__main__ import cli

ROOT = Path(__file__).parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()


def test_compose_runs_every_service_the_spec_names() -> None:
    assert {"postgres", "redis", "watcher", "worker", "enricher", "storage", "flower"} <= set(COMPOSE["services"])


def test_every_newsflow_command_in_compose_exists_in_the_cli() -> None:
    services = COMPOSE["services"]
    newsflow_services = {name: svc for name, svc in services.items() if svc.get("image") == "newsflow:latest"}
    assert {"watcher", "worker", "enricher", "storage", "migrate"} <= set(newsflow_services)
    for name, service in newsflow_services.items():
        if service.get("entrypoint"):
            continue
        assert service["command"][0] in cli.commands, f"{name}: newsflow has no command {service['command'][0]!r}"


def test_flower_runs_from_the_image_against_the_same_broker() -> None:
    flower = COMPOSE["services"]["flower"]
    assert flower["entrypoint"] == ["celery"]
    assert flower["command"][0] == f"--broker={flower['environment']['NEWSFLOW_BROKER_URL']}"
    assert importlib.util.find_spec("flower") is not None


def test_services_wait_for_migrations_and_healthy_servers() -> None:
    for name in ("watcher", "worker", "enricher", "storage"):
        depends = COMPOSE["services"][name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert "NEWSFLOW_DATABASE_URL" in COMPOSE["services"][name]["environment"]


def test_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["newsflow"]' in DOCKERFILE
    assert "constraints.txt" in DOCKERFILE
