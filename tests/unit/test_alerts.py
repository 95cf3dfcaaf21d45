"""The alert rules: every alert tested firing (by promtool, in tests/integration/test_checkers.py),
documented with a runbook, and built only from metrics the exporter declares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from exporter.collectors import all_collectors
from exporter.metrics import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "rules" / "alerts.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")
    }
    assert {a["alert"] for a in alerts()} == fired


def test_every_alert_has_severity_text_and_a_runbook_section() -> None:
    headings = {
        line[3:].strip().lower()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for alert in alerts():
        assert alert["labels"]["severity"] in ("info", "warning", "critical"), alert["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(key), (alert["alert"], key)
        anchor = alert["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == alert["alert"].lower()
        assert anchor in headings, f"docs/runbooks.md has no section {alert['alert']}"


def test_alerts_use_only_declared_metrics() -> None:
    all_collectors()  # declares every family
    exposed = {spec.exposed_name for spec in CATALOGUE.values()}  # counters with _total
    for alert in alerts():
        for name in re.findall(r"\b(docker_host_\w+)", alert["expr"]):
            assert name in exposed, (alert["alert"], name)
