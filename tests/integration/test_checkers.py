"""The shipped files and the exposition through the tools that own their formats: promtool
(rules, rule tests, metrics, Prometheus config), docker-compose and kubernetes-validate."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from exporter.collectors import all_collectors, facts_types
from exporter.metrics import render
from exporter.readers.docker_api import ContainerRecord, EngineFacts
from exporter.recording import snapshot_from_json
from exporter.selfmetrics import write_self_metrics
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from mixin.alert_tests import render_tests, subset_groups
from mixin.alerts import AlertSettings, resolved, rule, write_tests
from mixin.alerts import alerts as mixin_alerts
from mixin.settings import load
from tests.conftest import FIXTURES, unavailable
from tests.helpers import parse, value

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "tests" / "rules" / "alerts.test.yml"
DEPLOY = ROOT / "deploy"
RECORDED = FIXTURES / "host-snapshot.json"
WRITERS = (*(c.write_all(Settings()) for c in all_collectors()), write_self_metrics)


def recorded() -> Snapshot:
    return snapshot_from_json(RECORDED.read_text(), facts_types())


# Tools on the repository's files and a recorded host: nothing of the host's engine
# or kernel, so they run beside the host group (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.host_free]


def test_promtool_checks_the_rules(promtool: str) -> None:
    check = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def run_rule_tests(promtool: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", *map(str, files)],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# promtool's every scenario, CPU-bound: 90 s of CPU. One promtool evaluates its files one after
# another on one core; a promtool per file, as many at once as there are cores, uses them all.
# A hang guard, not a bound: over 300 s beside the host group with both cores busy.
@pytest.mark.timeout(900)
def test_promtool_rule_tests_pass(promtool: str, tmp_path: Path) -> None:
    """The hand-written cases and every alert's generated scenarios (mixin/alert_tests.py)."""
    generated = write_tests(AlertSettings(), tmp_path)
    files = [RULE_TESTS, *generated]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(
            zip(files, pool.map(lambda f: run_rule_tests(promtool, f), files), strict=True)
        )
    for file, result in results.items():
        assert result.returncode == 0, (file.name, result.stdout + result.stderr)
        assert result.stdout.count("SUCCESS") == 1, (file.name, result.stdout)


def test_the_scenarios_fail_rules_that_resolve_while_blind(promtool: str, tmp_path: Path) -> None:
    """The scenarios can fail: against rules without the look-through (a plain `x == 1`) the
    "holds while ..." ones do, and without keep_firing_for the resolving and dipping ones."""
    s = AlertSettings(keep_firing_for="0")
    plain = {
        "groups": [
            {
                "name": "plain",
                "rules": [
                    {**rule(resolved(a, s), s), "expr": a.live}
                    for a in mixin_alerts(s)
                    if a.name in ("DockerHostMasqueradeRuleMissing", "DockerHostZombieProcesses")
                ],
            }
        ]
    }
    rules = tmp_path / "plain.yml"
    rules.write_text(yaml.safe_dump(plain))
    tests = tmp_path / "generated.test.yml"
    only = ("DockerHostMasqueradeRuleMissing", "DockerHostZombieProcesses")
    tests.write_text(render_tests(AlertSettings(), rules, only))
    result = run_rule_tests(promtool, tests)
    assert result.returncode != 0
    failed = set(re.findall(r"name: (DockerHost\w+: .+),\n", result.stdout + result.stderr))
    for alert in only:
        for scenario in (
            "holds while the collector fails",
            "holds while a privilege is missing",
            "holds while the exporter is down",
            "resolves when the fault is fixed, after keep_firing_for",
        ):
            assert any(f.startswith(f"{alert}: {scenario}") for f in failed), (alert, scenario)
    # A dip resolves a plain verdict; zombies are judged over a window that tolerates it.
    assert "DockerHostMasqueradeRuleMissing: a fault dipping one minute in five stays firing" in (
        failed
    )
    # What does not depend on either still passes.
    assert not any("quiet without the fault" in f for f in failed), failed


def test_rules_generated_with_other_settings_pass_their_scenarios(
    promtool: str, tmp_path: Path
) -> None:
    """Settings reach the rules: another job, other severities and `for` durations, and the
    scenarios generated for them pass (a few alerts, to keep it short)."""
    settings = tmp_path / "settings.yml"
    settings.write_text(
        yaml.safe_dump(
            {
                "job_selector": 'job="dhe", cluster="c1"',
                "for_durations": {"DockerHostVethOrphaned": "7m", "DockerHostDaemonDown": "1m"},
                "severities": {"DockerHostVethOrphaned": "critical"},
                "keep_firing_for": "3m",
                "runbook_url": "https://runbooks.example/dhe.md",
            }
        )
    )
    out = tmp_path / "out"
    generate = subprocess.run(
        [sys.executable, "-m", "mixin.alerts", "--settings", str(settings), "--out-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert generate.returncode == 0, generate.stderr
    rules = out / "deploy" / "prometheus" / "alerts.yml"
    check = subprocess.run(
        [promtool, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    s = load(AlertSettings, settings)
    tests = tmp_path / "custom.test.yml"
    only = ("DockerHostVethOrphaned", "DockerHostDaemonDown", "DockerHostCollectorFailing")
    # Those alerts' rules as the command wrote them (promtool evaluates every rule it is given
    # at every step: the rest would only cost time).
    subset = tmp_path / "subset.yml"
    subset.write_text(yaml.safe_dump(subset_groups(yaml.safe_load(rules.read_text()), only)))
    tests.write_text(render_tests(s, subset, only))
    result = run_rule_tests(promtool, tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_validate_against_kubernetes_schemas() -> None:
    validate = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(validate), "--strict", "-k", "1.30.0", str(DEPLOY / "kubernetes" / "daemonset.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 3


def test_compose_file_validates(promtool: str) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        unavailable("docker-compose (Debian package) validates the compose file offline")
    assert compose is not None
    result = subprocess.run(
        [compose, "-f", str(DEPLOY / "compose" / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(DEPLOY / "compose" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_hostile_names_render_valid_exposition(promtool: str) -> None:
    hostile = 'we"ird\\name\nwith\ttabs and ünïcödé ✓'
    engine = EngineFacts(
        containers=(
            ContainerRecord(
                id="f" * 64,
                name=hostile,
                image=hostile + ':tag"',
                image_id="sha256:" + "0" * 64,
                state="running",
                network_mode="bridge",
                created=1.0,
            ),
        ),
        components=(),
        api_version="1.41",
    )
    snapshot = Snapshot().with_state(CollectorState("containers", True, 0.01, 1.0, engine))
    text = render(snapshot, WRITERS)
    samples = parse(text)
    assert value(samples, "docker_host_container_info", container=hostile) == 1
    lint = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_series_cap_drops_and_counts(promtool: str) -> None:
    text = render(recorded(), WRITERS, max_series=2)
    samples = parse(text)
    per_family: dict[str, int] = {}
    for s in samples:
        per_family[s.name] = per_family.get(s.name, 0) + 1
    assert max(n for name, n in per_family.items() if name != "docker_host_series_dropped") <= 2
    engine = recorded().current("containers", EngineFacts)
    assert engine is not None
    assert value(samples, "docker_host_series_dropped", family="docker_host_container_info") == (
        len(engine.containers) - 2
    )
    lint = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_shipped_scrape_and_alertmanager_configs_pass_their_checkers(promtool: str) -> None:
    """promtool reads the shipped prometheus.yml (its rule file beside it) and amtool the
    Alertmanager configuration, as Prometheus and Alertmanager would at start."""
    amtool = shutil.which("amtool")
    if amtool is None:
        unavailable("amtool (Debian's prometheus-alertmanager) checks the Alertmanager config")
    assert amtool is not None
    config = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    alertmanager = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert alertmanager.returncode == 0, alertmanager.stdout + alertmanager.stderr
