"""The generated dashboards: fresh, conventional, and built only from declared metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from exporter.collectors import all_collectors
from exporter.metrics import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
SELECTOR = 'job=~"$job", instance=~"$instance"'


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def exprs(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield target["expr"]


def test_committed_dashboards_are_what_the_generator_makes() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert len(DASHBOARDS) == 5


def test_conventions() -> None:
    uids = set()
    for path in DASHBOARDS:
        dashboard = load(path)
        uids.add(dashboard["uid"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert {"job", "instance"} <= set(variables), path.name
        assert "${DS_" not in path.read_text(), "no import-time datasource inputs"
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dashboard["panels"]:
            assert panel["type"] in ("timeseries", "stat", "table"), (path.name, panel["title"])
            assert panel["datasource"]["uid"] == "${datasource}"
    assert len(uids) == len(DASHBOARDS)


def test_every_query_is_scoped_and_rates_use_rate_interval() -> None:
    for path in DASHBOARDS:
        for expr in exprs(load(path)):
            for selector in re.findall(r"docker_host_\w+(\{[^}]*\})?", expr):
                assert SELECTOR in selector, (path.name, expr)
            for window in re.findall(r"(?:rate|increase)\([^)]*\[([^\]]+)\]", expr):
                assert window == "$__rate_interval", (path.name, expr)


def test_queries_use_only_declared_metrics() -> None:
    all_collectors()
    exposed = {spec.exposed_name for spec in CATALOGUE.values()}
    for path in DASHBOARDS:
        for expr in exprs(load(path)):
            for name in re.findall(r"\b(docker_host_\w+)", expr):
                assert name in exposed, (path.name, name)


def test_provisioning_files_parse() -> None:
    provisioning = ROOT / "grafana" / "provisioning"
    dashboards = yaml.safe_load(
        (provisioning / "dashboards" / "docker-host-exporter.yml").read_text()
    )
    assert dashboards["providers"][0]["type"] == "file"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
