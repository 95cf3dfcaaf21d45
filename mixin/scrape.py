"""The shipped scrape configurations, as Prometheus applies them: relabelling (Prometheus's
model/relabel, the actions the configs use) and honor_labels, and the Prometheus Operator's
translation of the PodMonitor into a scrape configuration. The alert tests run the rules on
series labelled this way; tests/integration/test_scrape_configs.py proves the equivalence with
a real Prometheus.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PODMONITOR = ROOT / "deploy" / "kubernetes" / "podmonitor.yaml"

Labels = dict[str, str]


def _anchored(regex: str) -> re.Pattern[str]:
    return re.compile(f"^(?:{regex})$")


def _expand(template: str, match: re.Match[str]) -> str:
    """Go's regexp Expand as Prometheus uses it: $1, ${1}, ${name}."""

    def group(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        try:
            return match.group(int(name) if name.isdigit() else name) or ""
        except IndexError:
            return ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", group, template)


def relabel(  # noqa: PLR0912 - one branch per action
    labels: Mapping[str, str], configs: Sequence[Mapping[str, Any]]
) -> Labels | None:
    """Prometheus's relabel.Process (the actions the shipped configs use); None: dropped."""
    out = dict(labels)
    for c in configs:
        action = c.get("action", "replace")
        regex = _anchored(str(c.get("regex", "(.*)")))
        sources = c.get("source_labels", [])
        value = str(c.get("separator", ";")).join(out.get(s, "") for s in sources)
        if action == "replace":
            m = regex.match(value)
            if m is None:
                continue
            target = _expand(str(c.get("target_label", "")), m)
            result = _expand(str(c.get("replacement", "$1")), m)
            if not target:
                continue
            if result:
                out[target] = result
            else:
                out.pop(target, None)
        elif action == "keep":
            if not regex.match(value):
                return None
        elif action == "drop":
            if regex.match(value):
                return None
        elif action == "labeldrop":
            out = {k: v for k, v in out.items() if not regex.match(k)}
        elif action == "labelkeep":
            out = {k: v for k, v in out.items() if regex.match(k)}
        else:
            raise ValueError(f"relabel action {action} is not modelled here")
    return out


def target_labels(
    discovered: Mapping[str, str], config: Mapping[str, Any], interval: str = "15s"
) -> Labels | None:
    """A target's labels after relabelling, as Prometheus's scrape.PopulateLabels makes them:
    job, __address__, __scheme__, __metrics_path__ first; `instance` from `__address__` when
    unset; labels starting with __ removed at the end."""
    base = {
        "job": str(config["job_name"]),
        "__scheme__": str(config.get("scheme", "http")),
        "__metrics_path__": str(config.get("metrics_path", "/metrics")),
        "__scrape_interval__": interval,
        "__scrape_timeout__": "10s",
        **discovered,
    }
    out = relabel(base, config.get("relabel_configs", []))
    if out is None:
        return None
    out.setdefault("instance", out["__address__"])
    return {k: v for k, v in out.items() if not k.startswith("__")}


def scraped(target: Mapping[str, str], metric: Mapping[str, str], honor: bool) -> Labels:
    """A scraped series' labels: honor_labels keeps the metric's on a clash; otherwise the
    target's win and the metric's become exported_<name>."""
    if honor:
        return {**target, **metric}
    out = dict(target)
    for k, v in metric.items():
        out[f"exported_{k}" if k in target else k] = v
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def podmonitor_config(podmonitor: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The scrape configuration the Prometheus Operator (v0.7x) generates for the first
    endpoint of a PodMonitor in that namespace: its own relabelling (the selector, the port,
    the namespace/container/pod/endpoint target labels, job = namespace/name), then the
    PodMonitor's relabelings, in order."""
    name = podmonitor["metadata"]["name"]
    spec = podmonitor["spec"]
    endpoint = spec["podMetricsEndpoints"][0]
    configs: list[dict[str, Any]] = [
        {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
    ]
    for key, value in spec["selector"]["matchLabels"].items():
        clean = re.sub(r"[^a-zA-Z0-9_]", "_", key)
        configs.append(
            {
                "action": "keep",
                "source_labels": [
                    f"__meta_kubernetes_pod_label_{clean}",
                    f"__meta_kubernetes_pod_labelpresent_{clean}",
                ],
                "regex": f"({value});true",
            }
        )
    configs += [
        {
            "action": "keep",
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": endpoint["port"],
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"target_label": "job", "replacement": f"{namespace}/{name}"},
        {"target_label": "endpoint", "replacement": endpoint["port"]},
    ]
    for r in endpoint.get("relabelings", []):
        configs.append({_snake(k): v for k, v in r.items()})
    return {
        "job_name": f"podMonitor/{namespace}/{name}/0",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "scrape_interval": endpoint.get("interval", "30s"),
        "relabel_configs": configs,
    }


def shipped() -> dict[str, dict[str, Any]]:
    """Every shipped scrape configuration, by name (the PodMonitor as the operator makes it,
    in namespace `monitoring`)."""
    found = {
        str(c["job_name"]): dict(c)
        for c in yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"]
    }
    (podmonitor,) = (d for d in yaml.safe_load_all(PODMONITOR.read_text()) if d)
    found["podmonitor"] = podmonitor_config(podmonitor, "monitoring")
    return found


def pod(node: str, name: str, address: str = "10.0.0.7:9747") -> Labels:
    """The discovered labels of one exporter pod (kubernetes_sd, role pod) on a node."""
    return {
        "__address__": address,
        "__meta_kubernetes_namespace": "monitoring",
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_node_name": node,
        "__meta_kubernetes_pod_container_name": "exporter",
        "__meta_kubernetes_pod_container_port_name": "metrics",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "docker-host-exporter",
        "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name": "true",
    }


def discovered(config_name: str, host: str = "node-1", pod_name: str = "dhe-7xk2p") -> Labels:
    """What discovery gives a target of each shipped configuration for this host."""
    if config_name == "podmonitor":
        return pod(host, pod_name)
    extra = {"datacenter": "dc1"} if config_name.endswith("-files") else {}
    return {"__address__": f"{host}:9747", **extra}
