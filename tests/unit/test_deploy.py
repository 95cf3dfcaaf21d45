"""Deployment files: the Kubernetes manifests against the Kubernetes schemas (offline), the
PrometheusRule in step with the alert rules, the compose file against its schema, and one set
of capabilities everywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CAPABILITIES = {"SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN", "NET_RAW"}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_daemonset_holds_only_the_capabilities_it_needs() -> None:
    daemonset = next(
        d for d in documents(DEPLOY / "kubernetes" / "daemonset.yaml") if d["kind"] == "DaemonSet"
    )
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostPID"] and pod["hostNetwork"]
    assert {"operator": "Exists"} in pod["tolerations"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == CAPABILITIES
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert all(m["readOnly"] for m in container["volumeMounts"])
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    assert set(compose["services"]["exporter"]["cap_add"]) == CAPABILITIES
    assert all(f"--cap-add={cap}" in (ROOT / "Dockerfile").read_text() for cap in CAPABILITIES)


def test_prometheusrule_is_the_alert_rules() -> None:
    generator = DEPLOY / "kubernetes" / "generate_rule.py"
    check = subprocess.run([sys.executable, str(generator), "--check"], timeout=60, check=False)
    assert check.returncode == 0, "run python deploy/kubernetes/generate_rule.py"
    (rule,) = documents(DEPLOY / "kubernetes" / "prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (monitor,) = documents(DEPLOY / "kubernetes" / "podmonitor.yaml")
    assert monitor["kind"] == "PodMonitor"
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
