"""The alert rules: generated from mixin/alerts.py and checked in up to date, every alert with a
runbook, a severity and text naming its host, covered by promtool scenarios (run by
tests/integration/test_checkers.py), built only from declared metrics and scoped by the job
selector; the settings refuse what they do not know."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.collectors import all_collectors
from exporter.metrics import CATALOGUE
from mixin import alert_tests
from mixin import alerts as mixin_alerts
from mixin.alerts import AlertSettings
from mixin.settings import SettingsError, duration_seconds, load

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
HAND_TESTS = ROOT / "tests" / "rules" / "alerts.test.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DEFAULTS = AlertSettings()


def alerts(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_checked_in_rules_are_what_the_mixin_generates() -> None:
    for path, text in mixin_alerts.outputs(DEFAULTS).items():
        assert (ROOT / path).read_text() == text, f"{path} is stale: run python -m mixin.alerts"


def test_check_flag_fails_on_a_stale_file(tmp_path: Path) -> None:
    for path, text in mixin_alerts.outputs(DEFAULTS).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    ok = [sys.executable, "-m", "mixin.alerts", "--check", "--out-dir", str(tmp_path)]
    assert subprocess.run(ok, cwd=ROOT, check=False, timeout=60).returncode == 0
    stale = tmp_path / mixin_alerts.RULES_PATH
    stale.write_text(stale.read_text().replace("for: 5m", "for: 6m", 1))
    result = subprocess.run(ok, cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert "alerts.yml" in result.stderr and "python -m mixin.alerts" in result.stderr


def test_every_alert_has_severity_text_naming_its_host_and_a_runbook_section() -> None:
    headings = {
        line[3:].strip().lower()
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("info", "warning", "critical"), name
        for key in ("summary", "description", "runbook_url"):
            assert alert["annotations"].get(key), (name, key)
        if name != "DockerHostExporterAbsent":  # no target exists: there is no host to name
            for key in ("summary", "description"):
                assert "{{ $labels.instance }}" in alert["annotations"][key], (name, key)
        anchor = alert["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == name.lower()
        assert anchor in headings, f"docs/runbooks.md has no section {name}"


def test_what_breaks_traffic_now_pages_and_what_breaks_at_the_next_restart_warns() -> None:
    severity = {a["alert"]: a["labels"]["severity"] for a in alerts()}
    for now in ("DockerHostMasqueradeRuleMissing", "DockerHostDnatRuleMissing"):
        assert severity[now] == "critical"
    for later in (
        "DockerHostDaemonFlagConflict",
        "DockerHostDaemonConfigInvalid",
        "DockerHostDaemonConfigRestartNeeded",
    ):
        assert severity[later] == "warning"
        text = next(a for a in alerts() if a["alert"] == later)["annotations"]["description"]
        assert "restart" in text


def test_alerts_use_only_declared_metrics() -> None:
    all_collectors()  # declares every family
    exposed = {spec.exposed_name for spec in CATALOGUE.values()}  # counters with _total
    for alert in alerts():
        for name in re.findall(r"\b(docker_host_\w+)", alert["expr"]):
            assert name in exposed, (alert["alert"], name)


def selectors(expr: str) -> list[tuple[str, str]]:
    """Every metric name in an expression, and its braces (empty when it has none)."""
    return re.findall(r"\b(docker_host_\w+|up)\b(\{[^}]*\})?", expr)


def test_every_selector_carries_the_job_selector() -> None:
    matchers = 'job=~"dhe|dhe2", cluster="c1"'
    s = load(AlertSettings, overrides=[f"job_selector={matchers}"])
    groups = mixin_alerts.rule_groups(s)["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        name = rule.get("alert", rule.get("record"))
        found = selectors(rule["expr"])
        assert found, name
        for metric, braces in found:
            assert braces.startswith("{" + matchers), (name, metric, braces)
        # ALERTS and the recorded verdicts carry the job's labels too.
        for metric, braces in re.findall(
            r"\b(ALERTS|docker_host:[\w:]+)(\{[^}]*\})?", rule["expr"]
        ):
            assert braces.startswith("{" + matchers), (name, metric, braces)
        assert "docker-host-exporter" not in rule["expr"], name


def test_verdicts_hold_what_was_firing_while_their_judge_is_blind() -> None:
    """Every alert on a collector's series holds, while what judges it cannot (a target absent
    from discovery included: no `up` is not `up == 1`), the verdict it fired on: ALERTS of the
    same alert and the recording of its last verdict taken while judging. No look-back of an
    hour: held is what was firing, not any sample of the last hour."""
    q = mixin_alerts.Q(DEFAULTS)
    for alert in mixin_alerts.alerts(DEFAULTS):
        expr = mixin_alerts.expression(alert, q)
        if alert.name.startswith("DockerHostExporter") or alert.name == "DockerHostVerdictUnknown":
            assert alert.blind is None, alert.name
            continue
        assert alert.blind is not None, alert.name
        assert f'alertname="{alert.name}", alertstate="firing"' in expr, alert.name
        assert f"docker_host:last_judged:{alert.name}" in expr, alert.name
        assert "and on(instance" in expr and 'up{job="docker-host-exporter"} == 1' in expr
        if alert.blind.collectors:
            assert "docker_host_collector_success{" in expr, alert.name
            assert "docker_host_privilege_missing{" in expr, alert.name
    for rule in (r for g in mixin_alerts.rule_groups(DEFAULTS)["groups"] for r in g["rules"]):
        windows = re.findall(r"\[(\w+)(?::\w*)?\]", rule["expr"])
        allowed = {"5m", "10m", "15m"} | ({"1d"} if rule.get("record") else set())
        assert set(windows) <= allowed, (rule.get("alert", rule.get("record")), windows)


def test_each_verdict_is_held_on_the_switch_that_blinds_it() -> None:
    by_name = {a.name: a for a in mixin_alerts.alerts(DEFAULTS)}
    switches = {
        "DockerHostMasqueradeRuleMissing": (("nat",), "nat"),
        "DockerHostDnatRuleMissing": (("nat",), "nat"),
        "DockerHostFilterRuleMissing": ((mixin_alerts.FIREWALL,), "filter"),
        "DockerHostIPForwardingOff": ((mixin_alerts.FIREWALL,), None),
        "DockerHostVethOrphaned": (("network",), None),
        "DockerHostPublishedPortBroken": (("ports",), None),
        "DockerHostDaemonDown": (("processes",), None),
        "DockerHostDaemonConfigInvalid": (("daemon",), None),
        "DockerHostConntrackTableNearlyFull": (("conntrack",), None),
    }
    for name, (collectors, family) in switches.items():
        blind = by_name[name].blind
        assert blind is not None and (blind.collectors, blind.family) == (collectors, family)
    # A disabled collector (no success series at all) does not hold a port's verdict forever.
    # A port's verdict joins nat's DNAT, firewall's forward path and network's veths.
    ports_blind = by_name["DockerHostPublishedPortBroken"].blind
    assert ports_blind is not None
    assert ports_blind.secondary == ("nat", mixin_alerts.FIREWALL, "network")
    # Docker's bridges come from the network collector, not from the filter rules' verdicts.
    assert "docker_host_bridge_info" in by_name["DockerHostIPForwardingOff"].live


def test_host_labels_are_in_every_join() -> None:
    s = load(AlertSettings, overrides=["host_labels=cluster,instance"])
    for rule in (r for g in mixin_alerts.rule_groups(s)["groups"] for r in g["rules"]):
        name = rule.get("alert", rule.get("record"))
        for join in re.findall(r"\b(?:on|by) ?\(([^)]*)\)", rule["expr"]):
            assert join.startswith("cluster, instance"), (name, join)
        assert "on(instance" not in rule["expr"], name


def test_a_single_insert_failure_warns_and_a_sustained_rate_pages() -> None:
    severity = {a["alert"]: a["labels"]["severity"] for a in alerts()}
    assert severity["DockerHostConntrackInsertFailing"] == "warning"
    assert severity["DockerHostConntrackInsertFailuresSustained"] == "critical"
    assert severity["DockerHostVerdictUnknown"] == "critical"
    assert severity["DockerHostFirewallRulesGone"] == "critical"


def test_settings_change_the_rules() -> None:
    s = load(
        AlertSettings,
        overrides=[
            "severities={DockerHostVethOrphaned: critical}",
            "for_durations={DockerHostVethOrphaned: 7m}",
            "keep_firing_for=0",
            "runbook_url=https://example.org/runbooks",
            "host_namespace_allowed_containers=node-exporter|cadvisor",
            "host_namespace_allowed_label=",
        ],
    )
    rules = {
        r["alert"]: r
        for g in mixin_alerts.rule_groups(s)["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    records = {
        r["record"]: r
        for g in mixin_alerts.rule_groups(s)["groups"]
        for r in g["rules"]
        if "record" in r
    }
    veth = rules["DockerHostVethOrphaned"]
    assert veth["labels"]["severity"] == "critical" and veth["for"] == "7m"
    assert veth["annotations"]["runbook_url"] == (
        "https://example.org/runbooks#dockerhostvethorphaned"
    )
    assert all("keep_firing_for" not in r for r in rules.values())
    # The live expression is in the recording the alert reads.
    shared = records["docker_host:last_judged:DockerHostContainerSharesHostNamespace"]["expr"]
    assert 'container!~"node-exporter|cadvisor"' in shared
    assert "docker_host_container_labels" not in shared
    # The exporter's own container is allowed whatever the settings say.
    assert "docker_host_exporter_container_info" in shared
    default = {
        r["alert"]: r
        for g in mixin_alerts.rule_groups(DEFAULTS)["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert default["DockerHostVethOrphaned"]["keep_firing_for"] == "10m"
    assert "label_docker_host_exporter_host_namespaces" in mixin_alerts.render_rules(DEFAULTS)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["no_such_setting=1"], "unknown setting no_such_setting; known: blind_hold"),
        (["severities={NoSuchAlert: warning}"], "severities: unknown alert NoSuchAlert"),
        (["severities={DockerHostVethOrphaned: page}"], "is not one of info, warning, critical"),
        (["for_durations={DockerHostVethOrphaned: soon}"], "'soon' is not a Prometheus duration"),
        (["blind_hold=6 hours"], "setting blind_hold"),
        (["collector_success_ratio=high"], "collector_success_ratio: wants a number"),
        (["collector_success_ratio=1.5"], "collector_success_ratio: wants a number in (0, 1]"),
        (["conntrack_warning_ratio=0.99"], "conntrack_warning_ratio < conntrack_critical_ratio"),
        (['job_selector={job="x"}'], "job_selector"),
        (["severities=critical"], "severities: wants a mapping"),
        (["novalue"], "wants key=value"),
    ],
)
def test_a_bad_setting_fails_with_a_clear_message(overrides: list[str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        mixin_alerts.rule_groups(load(AlertSettings, overrides=overrides))


def test_the_generator_refuses_an_unknown_setting_in_a_file(tmp_path: Path) -> None:
    settings = tmp_path / "mine.yml"
    settings.write_text('job_selector: job="dhe"\nrunbok_url: https://typo.example\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mixin.alerts",
            "--settings",
            str(settings),
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown setting runbok_url" in result.stderr and "runbook_url" in result.stderr
    assert not (tmp_path / mixin_alerts.RULES_PATH).exists()


# -- every alert has promtool tests that prove what the issue asked --------------------------


def case_for(name: str) -> str:
    return next(a.for_ for a in mixin_alerts.alerts(DEFAULTS) if a.name == name)


def generated_groups() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for case in alert_tests.cases(DEFAULTS):
        for group in alert_tests.scenarios(case, DEFAULTS):
            alert, _, scenario = group["name"].partition(": ")
            found.setdefault(alert, set()).add(scenario)
    return found


def test_every_alert_has_its_scenarios() -> None:
    generated = generated_groups()
    names = {a.name for a in mixin_alerts.alerts(DEFAULTS)}
    assert set(generated) | set(alert_tests.BY_HAND) == names
    assert not set(generated) & set(alert_tests.BY_HAND)
    everyone = {
        "fires after its pending window, the healthy sibling does not",
        "quiet without the fault",
        "resolves when the fault is fixed, after keep_firing_for",
    }
    cases = {c.alert: c for c in alert_tests.cases(DEFAULTS)}
    for alert, scenarios in generated.items():
        assert everyone <= scenarios, alert
        held = {s for s in scenarios if s.startswith("holds while")}
        case = cases[alert]
        named = bool(case.collector) and alert not in alert_tests.BLIND_COLLECTOR
        want = (
            2 + bool(case.collector) + bool(case.capability) + named
            if alert != "DockerHostExporterDown"
            else 0
        )
        assert len(held) == want, (alert, held)
        flapping = {s for s in scenarios if "alternating" in s or "dipping" in s or "single" in s}
        assert flapping, alert
        if alert != "DockerHostExporterDown":
            assert any("fixed, then the exporter down" in s for s in scenarios), alert
            assert any("target is gone from discovery" in s for s in scenarios), alert
            assert any("rollout" in s for s in scenarios), alert
        if alert_tests._flaps(case, int(duration_seconds(case_for(alert)) // 60)):
            assert any("alternating 1-minute" in s for s in scenarios), alert
    # Where a collector and a privilege can hide the fault, both scenarios are there.
    for alert in (
        "DockerHostMasqueradeRuleMissing",
        "DockerHostDnatRuleMissing",
        "DockerHostVethOrphaned",
        "DockerHostOrphanedShim",
        "DockerHostZombieProcesses",
    ):
        assert {
            "holds while the collector fails, resolves once it reads the fault gone",
            "holds while a privilege is missing, resolves once it reads the fault gone",
            "holds while the collector has not reported since a restart, resolves once it reads"
            " the fault gone",
        } <= generated[alert]


def test_alerts_tested_by_hand_fire_and_stay_quiet_in_the_hand_written_tests() -> None:
    tests = yaml.safe_load(HAND_TESTS.read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for t in tests:
        for case in t["alert_rule_test"]:
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    handover = alert_tests.handover_groups(DEFAULTS)
    for t in handover:
        for case in t["alert_rule_test"]:
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert set(alert_tests.BY_HAND) <= fired & quiet


def test_the_expected_annotations_are_filled_in_as_prometheus_does() -> None:
    render = alert_tests.render_template
    labels = {"instance": "h1", "container": "web"}
    assert render("{{ $labels.container }} on {{ $labels.instance }}", labels, 1) == "web on h1"
    assert render("{{ $value | humanizePercentage }}", labels, 0.375) == "37.5%"
    assert render("{{ $value }}", labels, 3) == "3"
    assert render("{{ $value }}", labels, 0.5) == "0.5"
    with pytest.raises(ValueError, match="does not know"):
        render("{{ $value | printf `%d` }}", labels, 1)


def test_the_timelines_write_stale_markers_and_promtool_notation() -> None:
    tokens = alert_tests._tokens([1, 1, 1, None, None, 0, 10, 20, 30])
    assert alert_tests._compress(tokens) == "1x2 stale _ 0+10x3"
