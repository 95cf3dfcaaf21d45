"""Writes prometheusrule.yaml from deploy/prometheus/alerts.yml: one source for the rules.

python deploy/kubernetes/generate_rule.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "alerts.yml"
OUT = HERE / "prometheusrule.yaml"


def render() -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "docker-host-exporter",
            "labels": {"app.kubernetes.io/name": "docker-host-exporter"},
        },
        "spec": yaml.safe_load(RULES.read_text()),
    }
    header = "# Generated from deploy/prometheus/alerts.yml by generate_rule.py: edit that.\n"
    return header + yaml.safe_dump(rule, sort_keys=False, width=100)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv[1:]:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else 1)
    OUT.write_text(text)
