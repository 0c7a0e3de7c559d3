"""The alert rules and the Grafana dashboard, checked by Prometheus' own promtool: the rules load, each alert
fires on what should make it fire and not on what should not (tests/prometheus/rules_test.yml), and every
PromQL expression of the dashboard parses. promtool comes from Debian's `prometheus` package (the binary
alone: `.ci/run` extracts it when it is missing); without it these tests skip, or fail when CI is set."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import promtool as find_promtool

ROOT = Path(__file__).parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "tests" / "prometheus" / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "newsflow.json"
# SPEC section 7: backlog growing, oldest item too old, failure rate, a stage without consumers, a silent
# source, the replay backlog, lag.
SPEC_ALERTS = {"NewsflowBacklogGrowing", "NewsflowOldestItemTooOld", "NewsflowFailureRate",
               "NewsflowStageWithoutConsumers", "NewsflowSourceSilent", "NewsflowReplayBacklog", "NewsflowLagHigh"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_promtool()


def run(promtool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_rules_load_and_each_alert_is_unit_tested(promtool: str) -> None:
    checked = run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert alerts == SPEC_ALERTS
    tested = {t["alertname"] for case in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for t in case["alert_rule_test"]}
    assert tested == alerts
    unit = run(promtool, "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_dashboard_expression_parses(promtool: str, tmp_path: Path) -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    titles = " ".join(panel["title"].lower() for panel in panels)
    for subject in ("depth", "oldest", "throughput", "lag", "failures by reason", "consumers"):
        assert subject in titles, subject
    as_rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"newsflow:panel_{i}", "expr": expr}
                                                             for i, expr in enumerate(exprs)]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(as_rules))
    checked = run(promtool, "check", "rules", str(tmp_path / "dashboard_rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
