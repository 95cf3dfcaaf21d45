"""The daemon collector against a dockerd the test starts and controls: its own --config-file,
--data-root, --exec-root, --pidfile and socket, a bridge of its own and no iptables, so the
host's engine and network are untouched (checked on the way out)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from exporter.report import render_report, snapshot_json
from exporter.settings import Settings
from tests.helpers import Sample, sample_once, select, value, wait_for

pytestmark = pytest.mark.integration

# A bridge of its own: with --bridge=none dockerd deletes docker0, the host engine's bridge.
BRIDGE = "dhd-br0"


@dataclass
class OwnDockerd:
    directory: Path
    config: Path
    process: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"unix://{self.directory}/docker.sock"

    def write(self, content: str | dict[str, Any]) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        self.config.write_text(text)
        # mtime resolution: make "modified after the last load" unambiguous.
        later = time.time() + 1
        os.utime(self.config, (later, later))

    def reload(self) -> None:
        before = self.reloads()
        self.process.send_signal(signal.SIGHUP)
        wait_for(lambda: self.reloads() > before, timeout=20)

    def reloads(self) -> int:
        client = docker.APIClient(base_url=self.host, version="auto")
        try:
            return len(
                list(
                    client.events(
                        since=0,
                        until=int(time.time()) + 1,
                        decode=True,
                        filters={"type": ["daemon"], "event": ["reload"]},
                    )
                )
            )
        finally:
            client.close()

    def sample(self) -> list[Sample]:
        snapshot, samples = sample_once(Settings(collectors=("daemon",), docker_host=self.host))
        assert snapshot.collectors["daemon"].success, snapshot.collectors["daemon"].error
        return samples


def start_dockerd(directory: Path, config: Path, *flags: str) -> subprocess.Popen[bytes]:
    log = (directory / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--config-file={config}",
            f"--data-root={directory}/root",
            f"--exec-root={directory}/exec",
            f"--pidfile={directory}/docker.pid",
            "-H",
            f"unix://{directory}/docker.sock",
            f"--bridge={BRIDGE}",
            "--iptables=false",
            "--ip6tables=false",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError((directory / "dockerd.log").read_text()[-2000:])
        try:
            client = docker.APIClient(base_url=f"unix://{directory}/docker.sock", version="auto")
            client.close()
            return True
        except docker.errors.DockerException:
            return False

    wait_for(answers, timeout=60, interval=0.2)
    return process


@pytest.fixture(scope="module")
def dockerd(engine: Any) -> Iterator[OwnDockerd]:
    # Short paths: containerd's socket under --exec-root must fit a sockaddr_un.
    directory = Path(tempfile.mkdtemp(prefix="dhd-", dir="/tmp"))
    config = directory / "conf" / "daemon.json"  # not /etc/docker: --config-file elsewhere
    config.parent.mkdir()
    config.write_text(json.dumps({"insecure-registries": ["a.example:5000"]}))
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True, timeout=30)
    host_bridge = Path("/sys/class/net/docker0")
    had_host_bridge = host_bridge.exists()
    process = None
    try:
        process = start_dockerd(directory, config, "--storage-driver=vfs")
        yield OwnDockerd(directory, config, process)
    finally:
        if process is not None:
            stop(process)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-R", str(directory)], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)
    assert host_bridge.exists() == had_host_bridge, "the test dockerd touched the host's docker0"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def drift(samples: list[Sample], key: str, **labels: str) -> float:
    return value(samples, "docker_host_daemon_config_drift", key=key, **labels)


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
        render_report(snapshot),
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
