"""The daemon collector against a dockerd the test starts and controls: its own --config-file,
--data-root, --exec-root, --pidfile and socket, a bridge of its own and no iptables, so the
host's engine and network are untouched (checked on the way out)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.collectors import all_collectors
from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.ports.facts import PortsFacts
from exporter.recording import snapshot_json
from exporter.report import render_report
from exporter.settings import Settings
from exporter.tick import Host
from tests.helpers import Sample, sample_once, select, value
from tests.own_dockerd import OwnDockerd, own_dockerd

# isolated (tests/conftest.py): a dockerd of its own (own bridge, directories, socket, no
# iptables); of the host's dockerd only its command line is read, which no test changes, and of
# the host's firewall (the last test) nothing is asserted but what this dockerd's flags say.
pytestmark = [pytest.mark.integration, pytest.mark.isolated]


def drift(samples: list[Sample], key: str, **labels: str) -> float:
    return value(samples, "docker_host_daemon_config_drift", key=key, **labels)


@pytest.fixture(scope="module")
def dockerd(engine: Any) -> Iterator[OwnDockerd]:
    with own_dockerd() as made:
        yield made


@pytest.fixture
def baseline(dockerd: OwnDockerd) -> OwnDockerd:
    dockerd.write({"insecure-registries": ["a.example:5000"], "log-driver": "json-file"})
    dockerd.reload()
    return dockerd


def test_seed_scenario_insecure_registry_needs_a_reload_then_is_in_sync(
    baseline: OwnDockerd,
) -> None:
    samples = baseline.sample()
    assert drift(samples, "insecure-registries", applies_on="reload") == 0
    assert value(samples, "docker_host_daemon_config_file_valid") == 1
    baseline.write(
        {"insecure-registries": ["a.example:5000", "b.example:5000"], "log-driver": "json-file"}
    )
    samples = baseline.sample()
    assert drift(samples, "insecure-registries", applies_on="reload") == 1
    assert value(samples, "docker_host_daemon_config_changed_since_load") == 1
    reloaded_before = value(samples, "docker_host_daemon_last_reload_timestamp_seconds")
    baseline.reload()
    samples = baseline.sample()
    assert drift(samples, "insecure-registries") == 0
    assert value(samples, "docker_host_daemon_last_reload_timestamp_seconds") > reloaded_before


def test_restart_only_key_stays_drifted_after_a_reload(baseline: OwnDockerd) -> None:
    baseline.write({"insecure-registries": ["a.example:5000"], "log-driver": "local"})
    samples = baseline.sample()
    assert drift(samples, "log-driver", applies_on="restart") == 1
    baseline.reload()
    samples = baseline.sample()
    assert drift(samples, "log-driver", applies_on="restart") == 1
    assert drift(samples, "insecure-registries") == 0


def test_key_both_flag_and_file_is_a_conflict(baseline: OwnDockerd) -> None:
    baseline.write({"storage-driver": "vfs"})
    samples = baseline.sample()
    assert value(samples, "docker_host_daemon_config_flag_conflict", key="storage-driver") == 1
    assert value(samples, "docker_host_daemon_config_file_valid") == 0
    assert value(samples, "docker_host_daemon_command_line_flag", key="storage-driver") == 1


def test_malformed_file_is_invalid_and_logged_once(
    baseline: OwnDockerd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    baseline.write('{"debug": tru')
    for _ in range(2):
        samples = baseline.sample()
    assert value(samples, "docker_host_daemon_config_file_valid") == 0
    assert value(samples, "docker_host_daemon_config_file_present") == 1
    assert not select(samples, "docker_host_daemon_config_drift")
    # Each sample_once builds a fresh reader, so each logs once: two samples, two lines.
    lines = [r for r in caplog.records if "would not start" in r.getMessage()]
    assert len(lines) == 2 and "not JSON" in str(lines[0].__dict__["reason"])


def test_deleted_file_given_by_flag_is_invalid(baseline: OwnDockerd) -> None:
    baseline.config.unlink()
    samples = baseline.sample()
    assert value(samples, "docker_host_daemon_config_file_present") == 0
    assert value(samples, "docker_host_daemon_config_file_valid") == 0
    assert (
        value(
            samples,
            "docker_host_daemon_config_file_info",
            path=str(baseline.config),
            explicit="true",
        )
        == 1
    )


def test_unknown_key_and_secrets(baseline: OwnDockerd) -> None:
    baseline.write(
        {
            "insecure-registries": ["a.example:5000"],
            "no-such-option": True,
            "https-proxy": "http://user:hunter2@proxy.example:3128",
            "registry-mirrors": ["https://user:hunter2@mirror.example"],
        }
    )
    snapshot, samples = sample_once(Settings(collectors=("daemon",), docker_host=baseline.host))
    assert value(samples, "docker_host_daemon_config_unknown_key", key="no-such-option") == 1
    assert value(samples, "docker_host_daemon_config_file_valid") == 0
    for output in (
        snapshot_json(snapshot),
        render_report(snapshot, [c.report for c in all_collectors()]),
        "".join(f"{s.name}{s.labels}" for s in samples),
    ):
        assert "hunter2" not in output


def test_unreadable_file_is_invalid_not_a_crash(baseline: OwnDockerd) -> None:
    baseline.config.unlink()
    baseline.config.mkdir()  # EISDIR on read: what any unreadable file looks like
    try:
        samples = baseline.sample()
        assert value(samples, "docker_host_daemon_config_file_valid") == 0
        assert not select(samples, "docker_host_daemon_config_drift")
    finally:
        baseline.config.rmdir()


def test_one_reading_of_the_dockerd_serving_docker_host(baseline: OwnDockerd) -> None:
    """Two dockerds run (the host's and this test's): each --docker.host gets its own, its
    flags and its --config-file, for daemon, firewall and ports alike."""
    baseline.write({"insecure-registries": ["a.example:5000"], "userland-proxy": False})
    own_host, host = Host.open(docker_host=baseline.host), Host.open()
    try:
        tick = own_host.tick()
        own = tick.dockerd()
        assert own is not None and own.pid == baseline.process.pid
        assert tick.dockerd() is own
        assert (own.config_path, own.config_path_explicit) == (str(baseline.config), True)
        assert own.boolean("iptables", default=True) == (False, "flag")
        assert own.boolean("userland-proxy", default=True) == (False, "daemon.json")
        hosts = host.tick().dockerd()
        assert hosts is not None and hosts.pid != own.pid
    finally:
        own_host.close()
        host.close()
    settings = Settings(collectors=("ports", "firewall"), docker_host=baseline.host)
    snapshot, _ = sample_once(settings)
    ports = snapshot.current("ports", PortsFacts)
    fw = snapshot.current("firewall", FirewallFacts)
    assert ports is not None and ports.userland_proxy is False
    assert fw is not None and (fw.docker_iptables, fw.docker_iptables_from) == (False, "flag")
