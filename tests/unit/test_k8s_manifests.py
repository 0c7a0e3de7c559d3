"""What deploy/k8s/base names exists and fits together: each Deployment runs a newsflow command with probes on
its service's port, resources, a non-root user, and the Secret keys the README tells the operator to create;
scaled Deployments leave `replicas` to KEDA, stop slower than a task may run, and are divided by the
concurrency they run with. (tests/unit/test_k8s.py validates the same files against their schemas.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from services.cli.__main__ import cli
from shared.celery_app import TASK_HARD_TIME_LIMIT_S
from shared.queues import Queue
from shared.settings import API_PORT, METRICS_PORTS

ROOT = Path(__file__).parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"
README = (ROOT / "README.md").read_text()
KUSTOMIZATION = yaml.safe_load((BASE / "kustomization.yaml").read_text())
DOCS = [doc for name in KUSTOMIZATION["resources"] for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]
PORTS = {**METRICS_PORTS, "api": API_PORT, "flower": 5555}
SECRET_KEYS = {"database-url", "broker-url", "flower-basic-auth"}
SCALED = {"worker", "enricher"}


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in DOCS if doc["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")


def container(name: str) -> dict[str, Any]:
    return DEPLOYMENTS[f"newsflow-{name}"]["spec"]["template"]["spec"]["containers"][0]


def test_every_file_of_the_base_is_in_the_kustomization() -> None:
    assert sorted(KUSTOMIZATION["resources"]) == sorted(p.name for p in BASE.glob("*.yaml")
                                                          if p.name != "kustomization.yaml")


def test_a_deployment_per_service_running_a_newsflow_command() -> None:
    assert set(DEPLOYMENTS) == {f"newsflow-{s}" for s in PORTS}
    for service in PORTS:
        args = container(service)["args"]
        if service == "flower":
            assert container(service)["command"] == ["celery"]
            assert args == ["--broker=$(NEWSFLOW_BROKER_URL)", "flower", f"--port={PORTS['flower']}"]
            continue
        assert "command" not in container(service)  # the image's entrypoint, newsflow
        assert args[0] == service and service in cli.commands
    assert container("api")["args"] == ["api", "--host", "0.0.0.0", "--port", str(API_PORT)]
    job = of_kind("Job")["newsflow-migrate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"] and "migrate" in cli.commands


def test_probes_ask_each_service_on_its_own_port() -> None:
    for service, port in PORTS.items():
        spec = container(service)
        assert spec["ports"] == [{"name": "http", "containerPort": port}]
        live, ready = ("/healthcheck", "/healthcheck") if service == "flower" else ("/healthz", "/readyz")
        assert spec["livenessProbe"]["httpGet"] == {"path": live, "port": "http"}, service
        assert spec["startupProbe"]["httpGet"] == {"path": live, "port": "http"}, service
        assert spec["readinessProbe"]["httpGet"] == {"path": ready, "port": "http"}, service
        annotations = DEPLOYMENTS[f"newsflow-{service}"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)


def test_every_container_has_requests_and_limits_and_runs_as_the_image_user() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    uid = int(re.search(r"^USER (\d+):\d+$", dockerfile, re.MULTILINE).group(1))  # type: ignore[union-attr]
    pods = [d["spec"]["template"]["spec"] for d in [*DEPLOYMENTS.values(), *of_kind("Job").values()]]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid
        assert pod["automountServiceAccountToken"] is False
        for spec in pod["containers"]:
            for bound in ("requests", "limits"):
                assert set(spec["resources"][bound]) == {"cpu", "memory"}, spec["name"]
            assert spec["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_secrets_come_from_the_secret_the_readme_creates() -> None:
    pods = [d["spec"]["template"]["spec"] for d in [*DEPLOYMENTS.values(), *of_kind("Job").values()]]
    used = {env["valueFrom"]["secretKeyRef"]["key"] for pod in pods for spec in pod["containers"]
            for env in spec["env"] if "secretKeyRef" in env.get("valueFrom", {})}
    assert used == SECRET_KEYS
    assert "Secret" not in {doc["kind"] for doc in DOCS}  # a reference: the operator creates it
    for key in SECRET_KEYS:
        assert f"--from-literal={key}=" in README, key
    assert "PASSWORD" not in json.dumps(DOCS)


def test_what_may_not_be_killed_mid_task_gets_longer_than_a_task_to_stop() -> None:
    for service in ("worker", "enricher", "storage"):
        pod = DEPLOYMENTS[f"newsflow-{service}"]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > TASK_HARD_TIME_LIMIT_S


def test_storage_keeps_a_pod_through_disruptions() -> None:
    budget = of_kind("PodDisruptionBudget")["newsflow-storage"]["spec"]
    storage = DEPLOYMENTS["newsflow-storage"]["spec"]
    assert budget["selector"]["matchLabels"] == storage["selector"]["matchLabels"]
    assert budget["minAvailable"] < storage["replicas"]


def test_the_watcher_watches_its_volume() -> None:
    claim = of_kind("PersistentVolumeClaim")["newsflow-drops"]
    pod = DEPLOYMENTS["newsflow-watcher"]["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "drops", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "drops", "mountPath": "/drops"}]
    assert json.loads(of_kind("ConfigMap")["newsflow"]["data"]["NEWSFLOW_DROP_DIRS"]) == ["/drops"]
    assert DEPLOYMENTS["newsflow-watcher"]["spec"]["strategy"] == {"type": "Recreate"}


def test_services_select_their_deployments() -> None:
    for name, service in of_kind("Service").items():
        labels = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"] == labels
        assert service["spec"]["ports"][0]["port"] == PORTS[name.removeprefix("newsflow-")]


def test_scaled_objects_scale_their_deployments_by_the_concurrency_they_run() -> None:
    scaled = of_kind("ScaledObject")
    assert set(scaled) == {f"newsflow-{s}" for s in SCALED}
    for service in SCALED:
        spec = scaled[f"newsflow-{service}"]["spec"]
        target = DEPLOYMENTS[spec["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"], "KEDA owns replicas; an apply would reset them"
        assert spec["maxReplicaCount"] >= 1 and spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["cooldownPeriod"] > 0
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"] > 0
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "postgresql" and trigger["metadata"]["targetQueryValue"] == "1"
        env = {e["name"] for e in container(service)["env"]}
        assert trigger["metadata"]["connectionFromEnv"] in env
        args = container(service)["args"]
        concurrency = args[args.index("--concurrency") + 1]
        divisor = re.search(r"count\(\*\) / \((\d+) \* (\d+)\.0\)", trigger["metadata"]["query"])
        assert divisor and divisor.group(1) == concurrency, trigger["metadata"]["query"]


def test_the_redis_variant_reads_the_parse_queue() -> None:
    overlay = yaml.safe_load((ROOT / "deploy" / "k8s" / "overlays" / "redis-trigger" / "kustomization.yaml")
                             .read_text())
    (patch,) = overlay["patches"]
    (trigger,) = yaml.safe_load(patch["patch"])[0]["value"]
    assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == Queue.PARSE.value
