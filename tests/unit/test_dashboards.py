"""The generated dashboards: fresh, described, united, navigable, and covering every family."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.build import TAG, Settings, families
from grafana.generate import BOARDS, render
from mixin import settings as mixin_settings
from mixin.alerts import AlertSettings
from mixin.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
SELECTOR = 'job=~"$job", instance=~"$instance"'


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in DASHBOARDS:
        for panel in load(path)["panels"]:
            if panel["type"] != "row":
                yield path.stem, panel


def exprs(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for note in dashboard["annotations"]["list"]:
        if "expr" in note:
            yield note["expr"]


def test_committed_dashboards_are_what_the_generator_makes() -> None:
    fresh = dict(render(Settings()))
    assert sorted(fresh) == [p.name for p in DASHBOARDS]
    stale = [
        name
        for name, text in fresh.items()
        if (ROOT / "grafana" / "dashboards" / name).read_text() != text
    ]
    assert stale == [], "run python -m grafana.generate"


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                str(ROOT / "grafana" / "generate.py"),
                "--check",
                "--out",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for path in DASHBOARDS:
        (tmp_path / path.name).write_text(path.read_text())
    assert check().returncode == 0
    (tmp_path / "nat.json").write_text(
        (tmp_path / "nat.json").read_text().replace("MASQUERADE", "SNAT")
    )
    (tmp_path / "gone.json").write_text("{}")
    failed = check()
    assert failed.returncode == 1
    assert "stale: nat.json, gone.json" in failed.stderr


def generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grafana.generate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unknown_or_bad_setting_fails_with_a_clear_message(tmp_path: Path) -> None:
    failed = generate("--check", "--set", "colour=red")
    assert failed.returncode == 2
    assert (
        "unknown setting colour; known: host_namespaces, job_selector, refresh, time_from "
        "(and the alert rules' blind_hold, " in failed.stderr
    )
    mine = tmp_path / "mine.yml"
    mine.write_text("refresh: 30s\ntime_form: now-1d\n")
    failed = generate("--check", "--settings", str(mine))
    assert failed.returncode == 2
    assert "unknown setting time_form" in failed.stderr
    for bad, said in (
        ("refresh=soon", "setting refresh: 'soon' is not a Prometheus duration"),
        ("time_from=yesterday", "setting time_from: wants now-<duration>"),
        ("job_selector=job=`x`", "setting job_selector: wants label matchers"),
        ("host_namespaces=pid(", "setting host_namespaces: not a regex"),
    ):
        with pytest.raises(SettingsError, match=re.escape(said)):
            mixin_settings.load(Settings, None, [bad])
    # One file for both generators: the alerts' keys are checked, then left to them.
    mine.write_text("refresh: 1m\nrunbook_url: https://example.com/runbooks\n")
    assert generate("--check", "--settings", str(mine)).returncode == 1  # stale, not refused
    mine.write_text("keep_firing_for: soon\n")
    failed = generate("--check", "--settings", str(mine))
    assert failed.returncode == 2
    assert "setting keep_firing_for: 'soon' is not a Prometheus duration" in failed.stderr
    listed = generate("--list-settings")
    assert listed.returncode == 0
    assert "job_selector (default 'job=\"docker-host-exporter\"')" in listed.stdout


def test_settings_change_the_output_and_share_the_alerts_defaults() -> None:
    assert Settings().job_selector == AlertSettings().job_selector
    assert Settings().host_namespaces == AlertSettings().host_namespaces
    settings = mixin_settings.load(
        Settings,
        None,
        ["time_from=now-24h", 'job_selector=job="docker"', "host_namespaces=pid|net"],
    )
    board = BOARDS["daemon"](settings).json(settings)
    assert board["time"]["from"] == "now-24h"
    job = next(v for v in board["templating"]["list"] if v["name"] == "job")
    assert 'docker_host_exporter_build_info{job="docker"}' in job["definition"]
    overview = json.dumps(BOARDS["overview"](settings).json(settings))
    assert 'namespace=~\\"pid|net\\"' in overview


def test_every_panel_has_a_description_from_help_a_unit_and_the_datasource() -> None:
    known = families()
    for board, panel in panels():
        where = (board, panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), where
        read = {n for t in panel["targets"] for n in re.findall(r"docker_host_\w+", t["expr"])}
        assert read, where
        for name in read:
            assert f"{name}: {known[name].help}" in panel["description"], (where, name)
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        if panel["type"] == "table":
            values = {
                o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                for o in panel["fieldConfig"]["overrides"]
            }
            shown = panel["transformations"][-2]["options"]["include"]["names"]
            for name in shown:
                assert name in values, (where, name)
                if name.startswith("Value"):
                    assert values[name].get("unit"), (where, name)
            titles = [v["displayName"] for v in values.values()]
            assert panel["options"]["sortBy"][0]["displayName"] in titles, where
            assert panel["fieldConfig"]["defaults"]["custom"]["filterable"] is True, where
        assert "(1 =" not in panel["title"], where


def test_values_that_are_good_or_bad_have_thresholds_and_mappings() -> None:
    by_title = {(b, p["title"]): p for b, p in panels()}
    valid = by_title[("daemon", "Config file valid")]["fieldConfig"]["defaults"]
    assert valid["mappings"][0]["options"]["0"] == {"text": "invalid", "color": "red", "index": 0}
    assert valid["thresholds"]["steps"][0]["color"] == "red"
    for (_, title), panel in by_title.items():
        if panel["type"] == "stat":
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0]["value"] is None, title
    # Every 0/1 verdict column reads as words, coloured.
    for (_, title), panel in by_title.items():
        for override in panel["fieldConfig"]["overrides"]:
            props = {p["id"]: p["value"] for p in override["properties"]}
            if "mappings" in props:
                assert props["custom.cellOptions"] == {"type": "color-text"}, title


def test_the_defects_of_issue_17_are_gone() -> None:
    by_title = {p["title"]: p for _, p in panels()}
    zombies = by_title["Processes and zombies per container"]
    assert any("docker_host_container_zombie_processes" in t["expr"] for t in zombies["targets"])
    sharing = by_title["Containers sharing host namespaces"]["targets"][0]["expr"]
    assert "== 1" in sharing
    assert "unless on (instance, container) docker_host_exporter_container_info" in sharing
    layers = by_title["Most shared layers (top K by bytes saved)"]
    assert layers["options"]["sortBy"] == [{"displayName": "saved by sharing", "desc": True}]
    saved = next(
        o for o in layers["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Value #A"
    )
    assert {"id": "unit", "value": "bytes"} in saved["properties"]
    # Per host, never summed across hosts.
    for board, panel in panels():
        if board == "overview" and panel["type"] == "stat":
            assert all("by (instance)" in t["expr"] for t in panel["targets"]), panel["title"]
            assert panel["targets"][0]["legendFormat"] == "{{instance}}"


def test_every_query_is_scoped_and_rates_use_rate_interval() -> None:
    known = families()
    for path in DASHBOARDS:
        dashboard = load(path)
        variables = {v["name"] for v in dashboard["templating"]["list"]} - {
            "datasource",
            "job",
            "instance",
        }
        for expr in exprs(dashboard):
            for name, selector in re.findall(r"(docker_host_\w+)(\{[^}]*\})?", expr):
                assert selector.startswith("{" + SELECTOR), (path.name, expr)
                for variable in variables & set(known[name].labels):
                    assert f'{variable}=~"${variable}"' in selector, (path.name, name)
            for window in re.findall(r"(?:rate|increase)\([^)]*\[([^\]]+)\]", expr):
                assert window == "$__rate_interval", (path.name, expr)


def test_variables_have_an_all_value_matching_empty_labels_too() -> None:
    for path in DASHBOARDS:
        variables = load(path)["templating"]["list"]
        assert [v["name"] for v in variables[:3]] == ["datasource", "job", "instance"]
        for variable in variables[1:]:
            assert variable["includeAll"] is True, (path.name, variable["name"])
            assert variable["allValue"] == ".*", (path.name, variable["name"])
            assert variable["current"]["value"] == ["$__all"], (path.name, variable["name"])


def test_dashboards_link_to_each_other_keeping_time_and_variables() -> None:
    uids = {load(p)["uid"] for p in DASHBOARDS}
    assert "dhe-topology" in uids
    for path in DASHBOARDS:
        dashboard = load(path)
        assert TAG in dashboard["tags"]
        [bar] = dashboard["links"]
        assert bar["type"] == "dashboards" and bar["tags"] == [TAG]
        assert bar["keepTime"] is True and bar["includeVars"] is True
    drilled = set()
    for board, panel in panels():
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] != "links":
                    continue
                for link in prop["value"]:
                    uid, query = re.fullmatch(r"/d/([\w-]+)\?(.*)", link["url"]).groups()  # type: ignore[union-attr]
                    assert uid in uids, (board, link)
                    assert "${__url_time_range}" in query and "${__value.raw}" in query
                    target = load(
                        ROOT / "grafana" / "dashboards" / f"{uid.removeprefix('dhe-')}.json"
                    )
                    variable = re.search(r"var-(\w+)=\$\{__value.raw\}", query).group(1)  # type: ignore[union-attr]
                    names = {v["name"] for v in target["templating"]["list"]}
                    assert variable in names, (board, link)
                    drilled.add((override["matcher"]["options"], uid))
    # A container, a veth, a network and an image each lead to the dashboard that explains it.
    assert {
        ("container", "dhe-topology"),
        ("interface", "dhe-network"),
        ("network", "dhe-network"),
        ("image_id", "dhe-layers"),
        ("container", "dhe-overview"),
    } <= drilled


def test_annotations_mark_restarts_reloads_edits_and_container_starts_and_stops() -> None:
    for path in DASHBOARDS:
        notes = {n["name"]: n for n in load(path)["annotations"]["list"]}
        for name, family in (
            ("dockerd / containerd started", "docker_host_daemon_process_start_time_seconds"),
            ("dockerd reloaded (SIGHUP)", "docker_host_daemon_last_reload_timestamp_seconds"),
            ("daemon.json edited", "docker_host_daemon_config_file_modified_timestamp_seconds"),
        ):
            assert family in notes[name]["expr"], path.name
            assert notes[name]["useValueForTime"] is True
    overview = {
        n["name"]
        for n in load(ROOT / "grafana" / "dashboards" / "overview.json")["annotations"]["list"]
    }
    assert {"containers started", "containers stopped"} <= overview


def test_topology_joins_its_columns_with_grafana_transformations() -> None:
    topology = load(ROOT / "grafana" / "dashboards" / "topology.json")
    table = next(p for p in topology["panels"] if p["title"] == "Containers and their plumbing")
    assert table["transformations"][0] == {
        "id": "joinByField",
        "options": {"byField": "row", "mode": "outerTabular"},
    }
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])
    # Every query keeps the join key, and nothing else the first query already has.
    for target in table["targets"]:
        assert target["expr"].startswith("max by (row"), target["refId"]
        assert '"row", "/", "instance", "container", "interface"' in target["expr"]
    shown = [
        next(p["value"] for p in o["properties"] if p["id"] == "displayName")
        for o in table["fieldConfig"]["overrides"]
    ]
    for column in (
        "container",
        "host veth",
        "bridge",
        "network",
        "subnet",
        "MASQUERADE",
        "published ports",
        "DNAT",
        "receives",
        "sends",
        "veth",
    ):
        assert column in shown


def test_queries_use_only_declared_metrics() -> None:
    known = families()
    for path in DASHBOARDS:
        for expr in exprs(load(path)):
            for name in re.findall(r"\b(docker_host_\w+)", expr):
                assert name in known, (path.name, name)


def excused() -> dict[str, str]:
    text = METRICS_DOC.read_text()
    section = text.split("## On no dashboard and in no alert", 1)[1]
    return dict(re.findall(r"^- `(docker_host_\w+)`: (.+)$", section, re.MULTILINE))


def test_every_family_is_on_a_dashboard_or_in_an_alert_or_excused_in_the_docs() -> None:
    read = set()
    for path in DASHBOARDS:
        for expr in exprs(load(path)):
            read |= set(re.findall(r"\b(docker_host_\w+)", expr))
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            read |= set(re.findall(r"\b(docker_host_\w+)", rule["expr"]))
    reasons = excused()
    uncovered = sorted(set(families()) - read - set(reasons))
    assert uncovered == [], (
        "put these on a dashboard or in an alert, or say why not in "
        "docs/metrics.md (On no dashboard and in no alert)"
    )
    assert sorted(set(reasons) & read) == [], "excused in docs/metrics.md but used: drop the excuse"
    assert set(reasons) <= set(families())
    assert all(len(reason) > 40 for reason in reasons.values())


def test_provisioning_files_parse() -> None:
    provisioning = ROOT / "grafana" / "provisioning"
    dashboards = yaml.safe_load(
        (provisioning / "dashboards" / "docker-host-exporter.yml").read_text()
    )
    assert dashboards["providers"][0]["type"] == "file"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
