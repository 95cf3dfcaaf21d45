"""The daemon collector's restart-only network keys (fixed-cidr, mtu, default-address-pools)
against a dockerd the test starts: in a network namespace of its own (dhe-dr-*), on a bridge of
its own (dhe-dr-br0, with an address there for fixed-cidr to lie in), no iptables; so the host's
engine, bridges, routes and firewall are untouched. Its daemon.json is changed without a
restart (pending), then applied by one; and with live-restore, a restart that keeps a running
container keeps the old default bridge too (drift: dockerd started with the file and runs
otherwise)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import pytest

from exporter.collectors import all_collectors
from exporter.report import render_report
from exporter.settings import Settings
from tests.conftest import BASE_IMAGE
from tests.engine_client import timed_client
from tests.helpers import Sample, sample_once, select, stop, value, wait_for
from tests.own_dockerd import dockerd_flags

pytestmark = [pytest.mark.integration, pytest.mark.isolated]

BRIDGE = "dhe-dr-br0"
BRIDGE_ADDRESS = "10.213.0.1/24"  # in the namespace only: fixed-cidr must lie in the bridge's
POOLS = [{"base": "10.214.0.0/16", "size": 24}]


@dataclass
class NetnsDockerd:
    directory: Path
    netns: str
    process: subprocess.Popen[bytes] | None = None  # dockerd, once started

    @property
    def host(self) -> str:
        return f"unix://{self.directory}/docker.sock"

    @property
    def config(self) -> Path:
        return self.directory / "daemon.json"

    def start(self) -> None:
        log = (self.directory / "dockerd.log").open("ab")
        process = self.process = start_dockerd(self.directory, self.netns, log)

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError((self.directory / "dockerd.log").read_text()[-2000:])
            try:
                docker.APIClient(base_url=self.host, version="auto").close()
                return True
            except docker.errors.DockerException:
                return False

        wait_for(answers, timeout=60, interval=0.2)

    def restart(self) -> None:
        assert self.process is not None
        stop(self.process)
        self.start()

    def write(self, config: dict[str, Any], mtime: float | None = None) -> None:
        self.config.write_text(json.dumps(config))
        # mtime resolution: "modified after dockerd read it" unambiguous.
        when = time.time() + 1 if mtime is None else mtime
        os.utime(self.config, (when, when))

    def reload(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        client = docker.APIClient(base_url=self.host, version="auto")
        try:

            def reloaded() -> bool:
                events = client.events(
                    since=0,
                    until=int(time.time()) + 1,
                    decode=True,
                    filters={"type": ["daemon"], "event": ["reload"]},
                )
                return any(True for _ in events)

            wait_for(reloaded, timeout=20)
        finally:
            client.close()

    def client(self) -> Any:
        return timed_client(self.host)

    def network(self, name: str, subnet: str | None = None) -> str:
        """A user-defined bridge network: its subnet from the pools, or the one given."""
        ipam = (
            docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
            if subnet
            else None
        )
        client = self.client()
        try:
            made = client.networks.create(name, driver="bridge", ipam=ipam)
            made.reload()
            return str(made.attrs["IPAM"]["Config"][0]["Subnet"])
        finally:
            client.close()

    def sample(self) -> tuple[list[Sample], str]:
        """The daemon collector with the nat collector, whose network list it judges against,
        and the inspect report."""
        snapshot, samples = sample_once(
            Settings(collectors=("daemon", "nat"), docker_host=self.host)
        )
        assert snapshot.collectors["daemon"].success, snapshot.collectors["daemon"].error
        report = render_report(snapshot, [c.report for c in all_collectors()])
        return samples, report


def start_dockerd(directory: Path, netns: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "dockerd",
            *dockerd_flags(
                directory,
                directory / "daemon.json",
                BRIDGE,
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=vfs",
            ),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def netns_dockerd(config: dict[str, Any]) -> Iterator[NetnsDockerd]:
    # Short paths: containerd's socket under --exec-root must fit a sockaddr_un.
    directory = Path(tempfile.mkdtemp(prefix="dhe-dr-", dir="/tmp"))
    netns = directory.name
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
    made: NetnsDockerd | None = None
    try:
        for command in (
            ["link", "set", "lo", "up"],
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            subprocess.run(["ip", "-n", netns, *command], check=True, timeout=30)
        made = NetnsDockerd(directory, netns)
        made.write(config, mtime=time.time() - 60)
        made.start()
        yield made
    finally:
        if made is not None:
            with contextlib.suppress(Exception):
                client = made.client()
                try:
                    for container in client.containers.list(all=True):
                        container.remove(force=True)
                finally:
                    client.close()
            if made.process is not None:
                stop(made.process)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        unmount_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
    assert not directory.exists(), f"{directory} left behind"


def unmount_under(directory: Path) -> None:
    """dockerd's mounts under the directory (its data root is bind-mounted onto itself),
    deepest first: `umount -R` of a directory that is no mount point unmounts nothing."""
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(f"{directory}/")
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", mount], capture_output=True, check=False, timeout=30)


def drift(samples: list[Sample], key: str) -> float | None:
    found = select(samples, "docker_host_daemon_config_drift", key=key)
    if not found:
        return None  # not comparable: no series, never a 0
    assert {s.labels["applies_on"] for s in found} == {"restart"}
    return value(samples, "docker_host_daemon_config_drift", key=key)


def verdict_line(report: str, key: str) -> str:
    return next(line for line in report.splitlines() if line.split()[:1] == [key])


@pytest.fixture
def dockerd(engine: Any) -> Iterator[NetnsDockerd]:
    with netns_dockerd({"mtu": 1400, "fixed-cidr": "10.213.0.0/25"}) as made:
        yield made


def test_network_keys_in_sync_then_pending_then_applied_by_a_restart(
    dockerd: NetnsDockerd,
) -> None:
    samples, _ = dockerd.sample()
    assert drift(samples, "mtu") == 0
    assert drift(samples, "fixed-cidr") == 0
    # No pools in the file: dockerd cuts a user network from its defaults.
    first = dockerd.network("dhe-dr-a")

    dockerd.write({"mtu": 1450, "fixed-cidr": "10.213.0.128/25", "default-address-pools": POOLS})
    samples, report = dockerd.sample()
    assert value(samples, "docker_host_daemon_config_changed_since_load") == 1
    assert drift(samples, "mtu") == 1
    assert drift(samples, "fixed-cidr") == 1
    assert drift(samples, "default-address-pools") == 1, first  # cut from the defaults
    assert "restart needed" in verdict_line(report, "default-address-pools")
    assert "restart needed" in verdict_line(report, "mtu")

    dockerd.restart()
    samples, report = dockerd.sample()
    assert drift(samples, "mtu") == 0
    assert drift(samples, "fixed-cidr") == 0
    # dhe-dr-a is older than this dockerd: no witness of the pools it runs. Nothing allocated
    # since: unknown, no series.
    assert drift(samples, "default-address-pools") is None
    assert "not comparable" in verdict_line(report, "default-address-pools")
    assert dockerd.network("dhe-dr-b").startswith("10.214.")
    # A subnet given at create time, of no pool's shape, says nothing either way.
    dockerd.network("dhe-dr-c", subnet="192.168.77.0/24")
    samples, report = dockerd.sample()
    assert drift(samples, "default-address-pools") == 0
    assert "in sync" in verdict_line(report, "default-address-pools")


def test_live_restore_keeps_the_old_bridge_and_that_is_drift(dockerd: NetnsDockerd) -> None:
    """With live-restore, a restart that finds a container running keeps the networks as
    they were: the new mtu and fixed-cidr are in the file dockerd started with, not in what it
    runs. Not "restart needed" (it was restarted): drift."""
    dockerd.write({"mtu": 1400, "fixed-cidr": "10.213.0.0/25", "live-restore": True})
    dockerd.reload()
    host, own = timed_client(), dockerd.client()
    try:
        own.images.load(b"".join(host.images.get(BASE_IMAGE).save(named=True)))
        own.containers.run(BASE_IMAGE, ["sleep", "3600"], name="dhe-dr-live", detach=True)
    finally:
        host.close()
        own.close()
    # Written before the restart, and not newer than the dockerd that reads it.
    dockerd.write(
        {"mtu": 1450, "fixed-cidr": "10.213.0.128/25", "live-restore": True},
        mtime=time.time() - 1,
    )
    dockerd.restart()
    samples, report = dockerd.sample()
    assert value(samples, "docker_host_daemon_config_changed_since_load") == 0
    assert drift(samples, "mtu") == 1
    assert drift(samples, "fixed-cidr") == 1
    assert "DRIFT" in verdict_line(report, "mtu")
    assert "DRIFT" in verdict_line(report, "fixed-cidr")
