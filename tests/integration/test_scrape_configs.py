"""The shipped scrape configurations (static, file_sd, the PodMonitor as the Prometheus
Operator makes it) through a real Prometheus, against mixin/scrape.py's model of relabelling
and honor_labels: the labels Prometheus gives a scraped series are the ones the generated alert
tests put on theirs (mixin/alert_tests.py scrape_groups). The PodMonitor's target gets its
kubernetes_sd meta labels from a static config: Prometheus relabels them the same whatever
discovered them. Everything on loopback."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from mixin import scrape
from tests.helpers import get, loopback_http, wait_for
from tests.integration.test_prometheus_e2e import prometheus

# host_free (tests/conftest.py): Prometheus and a fixed exposition on loopback ports; nothing
# of the host read.
pytestmark = [pytest.mark.integration, pytest.mark.host_free]

METRIC = {"container": "web", "namespace": "pid", "pod": "not-the-exporters"}
EXPOSITION = (
    "# TYPE dhe_probe gauge\n"
    + "dhe_probe{"
    + ",".join(f'{k}="{v}"' for k, v in METRIC.items())
    + "} 1\n"
)


@contextmanager
def exposition_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = EXPOSITION.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with loopback_http(Handler) as address:
        yield address


def test_prometheus_labels_the_shipped_configs_series_as_the_rule_tests_do(
    tmp_path: Path,
) -> None:
    configs = scrape.shipped()
    with exposition_server() as address:
        discovered = {
            "docker-host-exporter": {"__address__": address},
            "docker-host-exporter-files": {"__address__": address, "datacenter": "dc1"},
            "podmonitor": scrape.pod("node-1", "dhe-7xk2p", address),
        }
        jobs: list[dict[str, Any]] = []
        for name, config in configs.items():
            job = {k: v for k, v in config.items() if not k.endswith("_configs")}
            job["relabel_configs"] = config.get("relabel_configs", [])
            job["scrape_interval"] = "1s"
            labels = {k: v for k, v in discovered[name].items() if k != "__address__"}
            if "file_sd_configs" in config:
                targets = tmp_path / f"{name}.yml"
                targets.write_text(yaml.safe_dump([{"targets": [address], "labels": labels}]))
                job["file_sd_configs"] = [{"files": [str(targets)]}]
            else:
                job["static_configs"] = [{"targets": [address], "labels": labels}]
            jobs.append(job)
        want = []
        for name, config in configs.items():
            target = scrape.target_labels(discovered[name], config)
            assert target is not None, name
            want.append(scrape.scraped(target, METRIC, bool(config.get("honor_labels"))))
        with prometheus([], scrape_configs=jobs) as prom:

            def series() -> list[dict[str, str]]:
                query = urllib.parse.urlencode({"match[]": "dhe_probe"})
                found = json.loads(get(f"{prom.base}/api/v1/series?{query}", timeout=10))
                return [{k: v for k, v in s.items() if k != "__name__"} for s in found["data"]]

            wait_for(lambda: len(series()) >= len(configs), timeout=120, interval=1)
            got = series()
    key = lambda labels: sorted(labels.items())  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    # What the alerts need of it: the container named by the exporter, the node as instance.
    podmonitor = next(s for s in got if s["instance"] == "node-1")
    assert podmonitor == {**METRIC, "job": "docker-host-exporter", "instance": "node-1"}
