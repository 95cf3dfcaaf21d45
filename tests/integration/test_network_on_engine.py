"""The network collector against the real kernel and engine, checked against independent
readings: the container's own sysfs (iflink), the host's sysfs, and pyroute2's own decoder."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from exporter.readers.netlink import RtnlSocket
from exporter.readers.network import ContainerNetns, NetworkReader, NetworkReading
from exporter.readers.procfs import ProcfsReader
from exporter.settings import Settings
from tests.conftest import Containers
from tests.helpers import Sample, sample_once, select, value
from tests.host_objects import orphan_veths

pytestmark = pytest.mark.integration

SYS_NET = Path("/sys/class/net")
PORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")


def host_ifname(index: int) -> str:
    for entry in SYS_NET.iterdir():
        if (entry / "ifindex").read_text().strip() == str(index):
            return entry.name
    raise AssertionError(f"no host interface with ifindex {index}")


def sysfs_pairs(container: Any) -> set[tuple[str, str, str]]:
    """(host veth, container, container interface) from the container's own sysfs: each
    interface's iflink is its peer's ifindex on the host. No exec."""
    container.reload()
    root = Path(f"/proc/{container.attrs['State']['Pid']}/root/sys/class/net")
    pairs = set()
    for iface in root.iterdir():
        iflink = int((iface / "iflink").read_text())
        if iface.name != "lo" and iflink != int((iface / "ifindex").read_text()):
            pairs.add((host_ifname(iflink), container.name, iface.name))
    return pairs


def exported_pairs(samples: list[Sample], names: set[str]) -> set[tuple[str, str, str]]:
    return {
        (s.labels["interface"], s.labels["container"], s.labels["container_interface"])
        for s in select(samples, "docker_host_veth_info")
        if s.labels["container"] in names
    }


def test_every_network_mode_pairs_exactly(containers: Containers, network: Any) -> None:
    default = containers.run("default")
    user = containers.run("user", network=network.name)
    two = containers.run("two")
    network.connect(two)
    sharer = containers.run("sharer", network_mode=f"container:{default.id}")
    none = containers.run("none", network_mode="none")
    host = containers.run("host", network_mode="host")
    _, samples = sample_once()

    expected = sysfs_pairs(default) | sysfs_pairs(user) | sysfs_pairs(two)
    assert {iface for _, c, iface in expected if c == two.name} == {"eth0", "eth1"}
    names = {c.name for c in (default, user, two, sharer, none, host)}
    assert exported_pairs(samples, names) == expected
    networks = {
        s.labels["container_interface"]: s.labels["network"]
        for s in select(samples, "docker_host_veth_info", container=two.name)
    }
    assert set(networks.values()) == {"bridge", network.name}
    bridge = f"br-{network.id[:12]}"
    assert (
        value(
            samples,
            "docker_host_bridge_info",
            bridge=bridge,
            network=network.name,
            network_id=network.id[:12],
            driver="bridge",
        )
        == 1
    )
    assert (
        value(
            samples,
            "docker_host_container_network_shared_with",
            container=sharer.name,
            owner=default.name,
        )
        == 1
    )
    assert not select(samples, "docker_host_veth_orphaned")
    assert value(samples, "docker_host_veths", status="orphaned") == 0
    assert value(samples, "docker_host_collector_success", collector="network") == 1


def test_bridges_and_ports_match_sysfs(containers: Containers) -> None:
    containers.run("port")
    _, samples = sample_once()
    for bridge_dir in SYS_NET.glob("*/bridge"):
        bridge = bridge_dir.parent.name
        ports = {
            p.name: PORT_STATES[int((p / "state").read_text())]
            for p in (bridge_dir.parent / "brif").iterdir()
        }
        exported = {
            s.labels["port"]: s.labels["state"]
            for s in select(samples, "docker_host_bridge_port_state", bridge=bridge)
        }
        assert exported == ports, bridge
        assert value(samples, "docker_host_bridge_ports", bridge=bridge) == len(ports)
        stp = (bridge_dir / "stp_state").read_text().strip() != "0"
        assert select(
            samples, "docker_host_bridge_info", bridge=bridge, stp="enabled" if stp else "disabled"
        )


def test_host_side_counters_match_sysfs(containers: Containers) -> None:
    c = containers.run("counted")
    ((veth, _, _),) = sysfs_pairs(c)
    stats = SYS_NET / veth / "statistics"
    before = {f: int((stats / f).read_text()) for f in ("rx_bytes", "tx_packets")}
    _, samples = sample_once()
    after = {f: int((stats / f).read_text()) for f in ("rx_bytes", "tx_packets")}
    received = value(
        samples, "docker_host_veth_receive_bytes_total", interface=veth, container=c.name
    )
    sent = value(
        samples, "docker_host_veth_transmit_packets_total", interface=veth, container=c.name
    )
    assert before["rx_bytes"] <= received <= after["rx_bytes"]
    assert before["tx_packets"] <= sent <= after["tx_packets"]


@pytest.fixture
def orphans(engine: Any) -> Iterator[dict[str, str]]:
    with orphan_veths() as made:
        yield made


def test_orphans_fire_within_one_sample(orphans: dict[str, str], containers: Containers) -> None:
    healthy = containers.run("healthy")
    _, samples = sample_once()
    found = {
        (s.labels["interface"], s.labels["reason"], s.labels["bridge"])
        for s in select(samples, "docker_host_veth_orphaned")
    }
    assert found == {
        (orphans["on_bridge"], "no_container", "docker0"),
        (orphans["gone_ns"], "no_container", "docker0"),
        (orphans["host_pair"], "no_container", "docker0"),
    }
    ((veth, _, _),) = sysfs_pairs(healthy)
    assert select(samples, "docker_host_veth_info", interface=veth, container=healthy.name)
    # The far end of the host pair is not on a Docker bridge: not Docker's to judge.
    assert not select(samples, "docker_host_veth_orphaned", interface=orphans["host_pair"] + "p")


def test_churn_never_fires_an_orphan_and_leaves_no_series(containers: Containers) -> None:
    victims = [containers.run(f"gone{i}") for i in range(5)]
    failures: list[str] = []
    orphans: list[dict[str, str]] = []
    stop = threading.Event()

    def sample_continuously() -> None:
        while not stop.is_set():
            snapshot, samples = sample_once(Settings(collectors=("containers", "network")))
            failures.extend(
                f"{s.name}: {s.error}" for s in snapshot.collectors.values() if not s.success
            )
            orphans.extend(dict(s.labels) for s in select(samples, "docker_host_veth_orphaned"))

    thread = threading.Thread(target=sample_continuously)
    thread.start()
    try:
        for victim in victims:
            victim.remove(force=True)
        # Pairs being built and torn down, back to back, while the sampler watches.
        for i in range(15):
            containers.run(f"churn{i}").remove(force=True)
    finally:
        stop.set()
        thread.join(60)
    assert failures == []
    assert orphans == []
    _, samples = sample_once()
    names = {v.name for v in victims}
    assert not [s for s in samples if s.labels.get("container") in names]
    assert not select(samples, "docker_host_veth_orphaned")


def test_link_parser_agrees_with_pyroute2(containers: Containers) -> None:
    containers.run("parsed")
    ours = {link.index: link for link in RtnlSocket().dump_links()}
    with IPRoute() as ipr:
        theirs = list(ipr.get_links())
    assert set(ours) == {m["index"] for m in theirs}
    for m in theirs:
        link = ours[m["index"]]
        assert link.name == m.get("ifname")
        assert link.kind == (m.get(("linkinfo", "kind")) or "")
        assert link.master == m.get("master")
        assert link.peer_nsid == m.get("link_netnsid")
        assert link.operstate == m.get("operstate").lower()
        if link.kind == "veth":
            assert link.peer_index == m.get("link")
        stats = m.get("stats64")
        assert link.counters is not None and stats is not None
        assert link.counters.rx_bytes <= stats.get("rx_bytes")


def test_a_reading_looks_again_only_at_the_shims_whose_processes_changed(
    containers: Containers,
) -> None:
    """The reader keeps what each shim's processes were found in while none of them changed: after
    one container restarted, the other's namespace is the very same object, the restarted one's
    is its new namespace, and the reading says what a fresh reader's says."""
    kept, restarted = containers.run("kept"), containers.run("restarted")
    procfs, reader = ProcfsReader(), NetworkReader()

    def ours(reading: NetworkReading) -> dict[str, ContainerNetns]:
        found = {n.container_id: n for n in reading.container_netns}
        return {c.id: found[c.id] for c in (kept, restarted) if c.id in found}

    def settled() -> dict[str, ContainerNetns]:
        # Until both namespaces have their ids (the host gives one with a notification).
        for _ in range(50):
            now = ours(reader.read(procfs, procfs.scan()))
            if len(now) == 2 and all(n.nsid is not None for n in now.values()):
                return now
            time.sleep(0.2)
        raise AssertionError(f"no ids for both namespaces: {now}")

    try:
        before = settled()
        assert ours(reader.read(procfs, procfs.scan())) == before
        restarted.restart(timeout=0)
        restarted.reload()
        for _ in range(50):
            after = settled()
            if after[restarted.id].inode != before[restarted.id].inode:
                break
            time.sleep(0.2)
        assert after[kept.id] is before[kept.id]
        new = after[restarted.id]
        assert new.pid == restarted.attrs["State"]["Pid"]
        assert new.inode == Path(f"/proc/{new.pid}/ns/net").stat().st_ino
        fresh_procfs, fresh = ProcfsReader(follow_events=False), NetworkReader()
        try:
            assert ours(fresh.read(fresh_procfs, fresh_procfs.scan())) == after
        finally:
            fresh.close()
    finally:
        reader.close()
