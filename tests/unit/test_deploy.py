"""docker-compose.yml and the image cannot be run here (no Docker engine), so check the file against the Compose
specification's JSON schema (tests/schemas/compose-spec.json) and check that what it names exists: commands,
ports, files, secrets."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services.cli.__main__ import cli
from shared.settings import API_PORT, METRICS_PORTS

ROOT = Path(__file__).parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
SECRETS_SCRIPT = (ROOT / "deploy" / "compose-secrets.sh").read_text()
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
# SPEC section 8: every service of the system.
SPEC_SERVICES = {"postgres", "redis", "migrate", "watcher", "worker", "enricher", "storage", "api", "flower",
                 "prometheus", "grafana"}
PORTS = {**METRICS_PORTS, "api": API_PORT, "flower": 5555}
NEWSFLOW = {name: svc for name, svc in SERVICES.items() if svc.get("image") == "newsflow:latest"}


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    jsonschema.validate(COMPOSE, schema, cls=jsonschema.Draft7Validator)


def test_the_schema_catches_a_mistake() -> None:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    broken = {"services": {"worker": {"image": "newsflow:latest", "healthcheck": {"tset": ["CMD", "true"]}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_compose_runs_every_service_the_spec_names() -> None:
    assert set(SERVICES) == SPEC_SERVICES


def test_every_newsflow_command_in_compose_exists_in_the_cli() -> None:
    assert {"migrate", "watcher", "worker", "enricher", "storage", "api", "flower"} == set(NEWSFLOW)
    for name, service in NEWSFLOW.items():
        if name == "flower":
            continue
        assert "entrypoint" not in service, name
        assert service["command"][0] in cli.commands, f"{name}: newsflow has no command {service['command'][0]!r}"
        assert "newsflow" in DOCKERFILE and 'ENTRYPOINT ["newsflow"]' in DOCKERFILE


def test_flower_runs_from_the_image_against_the_same_broker_behind_basic_auth() -> None:
    flower = SERVICES["flower"]
    assert flower["entrypoint"] == ["sh", "-c"]
    words = shlex.split(flower["command"][0])
    assert words[0] == 'FLOWER_BASIC_AUTH=$$(cat /run/secrets/flower_basic_auth)'
    assert words[1:4] == ["exec", "celery", f"--broker={flower['environment']['NEWSFLOW_BROKER_URL']}"]
    assert words[4:] == ["flower", f"--port={PORTS['flower']}"]
    assert flower["secrets"] == ["flower_basic_auth"]
    assert importlib.util.find_spec("flower") is not None


def _probe_port(service: dict[str, Any]) -> int:
    code = service["healthcheck"]["test"]
    assert code[:3] == ["CMD", "python", "-c"], "the image has Python, not curl"
    found = re.fullmatch(r"import urllib\.request; urllib\.request\.urlopen\('http://127\.0\.0\.1:(\d+)/(\w+)'\)",
                         code[3])
    assert found, code[3]
    assert found.group(2) in ("readyz", "healthcheck")
    return int(found.group(1))


def test_healthchecks_ask_each_service_on_its_own_port() -> None:
    for name, service in NEWSFLOW.items():
        if name == "migrate":
            assert "healthcheck" not in service
            continue
        assert _probe_port(service) == PORTS[name], name
    assert "--port" in SERVICES["api"]["command"]
    assert SERVICES["api"]["command"][SERVICES["api"]["command"].index("--port") + 1] == str(API_PORT)


def test_published_ports_listen_on_localhost_unless_the_operator_says_otherwise() -> None:
    published = {name: svc["ports"] for name, svc in SERVICES.items() if "ports" in svc}
    assert set(published) == {"api", "flower", "prometheus", "grafana"}  # never PostgreSQL or Redis
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("${NEWSFLOW_PUBLISH_ADDRESS:-127.0.0.1}:"), (name, port)
    assert published["api"] == [f"${{NEWSFLOW_PUBLISH_ADDRESS:-127.0.0.1}}:{API_PORT}:{API_PORT}"]


def test_no_password_is_inline_and_every_secret_is_written_by_the_script() -> None:
    assert "PASSWORD:" not in COMPOSE_TEXT.replace("PASSWORD__FILE:", "").replace("PASSWORD_FILE:", "")
    assert "@postgres" not in COMPOSE_TEXT  # the database URL holds the password: a secret file
    for name, secret in COMPOSE["secrets"].items():
        assert secret["file"] == f"./deploy/secrets/{name}"
        assert re.search(rf"^keep {name} ", SECRETS_SCRIPT, re.MULTILINE), name
    used = {s for svc in SERVICES.values() for s in svc.get("secrets", [])}
    assert used == set(COMPOSE["secrets"])
    assert SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == (
        "/run/secrets/grafana_admin_password")
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert NEWSFLOW["worker"]["environment"]["NEWSFLOW_DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert "*" in (ROOT / "deploy" / "secrets" / ".gitignore").read_text().splitlines()


def test_services_run_as_a_non_root_user() -> None:
    assert "USER 10001:10001" in DOCKERFILE
    for name, service in SERVICES.items():
        if name in NEWSFLOW:
            assert service["user"] == "10001:10001", name
        elif name in ("postgres", "redis"):
            assert service["user"] == name  # the images' own users; they drop root themselves otherwise
        # prometheus (nobody) and grafana (472) run as non-root users in their images


def test_every_file_mounted_exists_in_the_project() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):  # long syntax: only the drop folder, which compose creates
                assert volume["bind"]["create_host_path"] is True and volume["source"] == "./drops", name
                continue
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: {source}"


def test_services_wait_for_migrations_and_healthy_servers() -> None:
    for name in ("watcher", "worker", "enricher", "storage", "api"):
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def _seconds(duration: str) -> int:
    value, unit = re.fullmatch(r"(\d+)([sm])", duration).groups()  # type: ignore[union-attr]
    return int(value) * (60 if unit == "m" else 1)


def test_workers_get_longer_than_a_task_to_stop() -> None:
    from shared.celery_app import TASK_HARD_TIME_LIMIT_S

    for name in ("worker", "enricher", "storage"):
        assert _seconds(SERVICES[name]["stop_grace_period"]) > TASK_HARD_TIME_LIMIT_S


def test_prometheus_scrapes_every_service_and_loads_the_rules() -> None:
    prometheus = SERVICES["prometheus"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in prometheus["volumes"] if v.startswith(".")}
    assert mounted["./deploy/prometheus/rules.yml"] in PROMETHEUS["rule_files"]
    assert mounted["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    targets = {}
    for job in PROMETHEUS["scrape_configs"]:
        for config in job.get("static_configs", []):
            targets.update({t.split(":")[0]: int(t.split(":")[1]) for t in config["targets"]})
        for config in job.get("dns_sd_configs", []):
            targets.update({host: config["port"] for host in config["names"]})
    assert targets == {name: PORTS[name] for name in ("watcher", "worker", "enricher", "storage", "api", "flower")}


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    grafana = SERVICES["grafana"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith(".")}
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounted["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "newsflow.yml").read_text())["providers"][0]
    dashboard_path = mounted["./deploy/grafana/newsflow.json"]
    assert Path(dashboard_path).parent == Path(provider["options"]["path"])


def test_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert 'ENTRYPOINT ["newsflow"]' in DOCKERFILE
    assert "constraints.txt" in DOCKERFILE


def test_the_secrets_script_writes_each_secret_once(tmp_path: Path) -> None:
    (tmp_path / "deploy" / "secrets").mkdir(parents=True)
    script = tmp_path / "deploy" / "compose-secrets.sh"
    script.write_text(SECRETS_SCRIPT)
    subprocess.run(["sh", str(script)], check=True, capture_output=True, timeout=30)
    secrets = tmp_path / "deploy" / "secrets"
    written = {name: (secrets / name).read_text() for name in COMPOSE["secrets"]}
    password = written["postgres_password"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", password)
    assert written["database_url"] == f"postgresql://newsflow:{password}@postgres:5432/newsflow"
    assert re.fullmatch(r"admin:[A-Za-z0-9_-]{24}", written["flower_basic_auth"])
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    again = subprocess.run(["sh", str(script)], check=True, capture_output=True, text=True, timeout=30)
    assert again.stdout == "" and (secrets / "postgres_password").read_text() == password
