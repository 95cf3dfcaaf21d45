"""Verdicts on the hosts the exporter is deployed on, not only on a host that runs Docker
alone: a swarm node, a node whose pods are set up by a CNI-style plugin, Podman beside Docker,
and a sandbox dockerd left behind. Real kernel, real engine; owners are found from mount
tables and processes, so the names given here mean nothing to the exporter."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.network.source import NetworkSource
from exporter.settings import Settings
from exporter.tick import Host
from tests.conftest import BASE_IMAGE, Containers
from tests.helpers import Sample, sample_once, select, value, wait_for
from tests.host_objects import ip, veth_into
from tests.podman import podman_container
from tests.swarm import gwbridge_exists, leave_swarm, swarm_lock, swarm_state

pytestmark = pytest.mark.integration

NETWORK = Settings(collectors=("containers", "network", "nat"))


def judged(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """The orphaned veths and the missing NAT rules of a sample."""
    orphans = [s for s in select(samples, "docker_host_veth_orphaned") if s.value]
    missing = [
        s
        for s in samples
        if s.name in ("docker_host_nat_masquerade_missing", "docker_host_nat_dnat_missing")
        and s.value
    ]
    return orphans, missing


def owner_of(samples: list[Sample], interface: str) -> tuple[str, str]:
    (found,) = select(samples, "docker_host_veth_peer_namespace_info", interface=interface)
    return found.labels["owner_kind"], found.labels["owner"]


def host_veth_of(pid: int) -> str:
    """The host end of a process's eth0, from its own sysfs (iflink is the peer's ifindex)."""
    iflink = (Path(f"/proc/{pid}/root/sys/class/net/eth0/iflink")).read_text().strip()
    for entry in Path("/sys/class/net").iterdir():
        if (entry / "ifindex").read_text().strip() == iflink:
            return entry.name
    raise AssertionError(f"no host interface with ifindex {iflink}")


def docker_cli(*args: str, timeout: float = 120) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=timeout
    ).stdout


@pytest.fixture
def swarm(engine: Any) -> Iterator[Any]:
    """A single-node swarm on the test bed's engine, left however the test ends (the test
    leaves it itself: so it must be the one that made it)."""
    with swarm_lock():
        if swarm_state(engine) == "active":
            pytest.fail("the test bed's engine is already in a swarm: leave it first")
        had_gwbridge = gwbridge_exists()
        docker_cli("swarm", "init", "--advertise-addr", "127.0.0.1")
        try:
            yield engine
        finally:
            with contextlib.suppress(Exception):  # the test may have left the swarm itself
                for service in engine.services.list(filters={"label": "dhe-test"}):
                    service.remove()
            leave_swarm(had_gwbridge)


def test_swarm_node_has_no_orphan_and_no_missing_rule(swarm: Any) -> None:
    name = f"dhe-svc-{uuid.uuid4().hex[:6]}"
    docker_cli(
        "service", "create", "--detach", "--name", name, "--label", "dhe-test=1",
        "--publish", "published=18081,target=80", BASE_IMAGE, "sleep", "3600",
    )  # fmt: skip

    def task() -> Any:
        found = swarm.containers.list(filters={"label": f"com.docker.swarm.service.name={name}"})
        return found[0] if found else None

    wait_for(lambda: task() is not None and task().status == "running", timeout=90)
    # The routing mesh is in place when the ingress sandbox's veth is on docker_gwbridge.
    wait_for(lambda: Path("/run/docker/netns/ingress_sbox").exists(), timeout=60)
    container = task()
    container.reload()
    time.sleep(2)  # libnetwork finishes the task's endpoints after the task reports running
    _, samples = sample_once(NETWORK)

    orphans, missing = judged(samples)
    assert orphans == []
    assert missing == []
    # The task's docker_gwbridge interface is paired like any container's. Its ingress
    # (overlay) interface pairs with a veth inside the overlay's own namespace, not the host's.
    paired = select(samples, "docker_host_veth_info", container=container.name)
    assert {(s.labels["bridge"], s.labels["network"]) for s in paired} == {
        ("docker_gwbridge", "docker_gwbridge")
    }
    sandboxes = [
        s
        for s in select(samples, "docker_host_veth_peer_namespace_info")
        if s.labels["owner_kind"] == "docker_sandbox"
    ]
    assert [(s.labels["bridge"], s.labels["owner"]) for s in sandboxes] == [
        ("docker_gwbridge", "ingress_sbox")
    ]
    assert value(samples, "docker_host_veths", status="docker_sandbox") == 1
    assert value(samples, "docker_host_bridge_info", bridge="docker_gwbridge")
    assert value(samples, "docker_host_nat_masquerade_missing", bridge="docker_gwbridge") == 0

    docker_cli("service", "rm", name)
    docker_cli("swarm", "leave", "--force")
    # Within two intervals of the exporter (two samples), nothing of the swarm is left.
    for _ in range(2):
        _, samples = sample_once(NETWORK)
    assert not [s for s in samples if container.name in s.labels.values()]
    assert not [s for s in samples if "ingress_sbox" in s.labels.values()]
    assert value(samples, "docker_host_veths", status="docker_sandbox") == 0
    assert judged(samples) == ([], [])


@contextlib.contextmanager
def cni_pod() -> Iterator[dict[str, str]]:
    """What a CNI bridge plugin makes for a pod: a bridge that is not Docker's, an `ip netns`
    namespace pinned under /run/netns, and a veth from the bridge into it."""
    tag = uuid.uuid4().hex[:4]
    made = {"bridge": f"cni{tag}", "netns": f"cni-{tag}", "veth": f"vcni{tag}"}
    try:
        ip("link", "add", made["bridge"], "type", "bridge")
        ip("netns", "add", made["netns"])
        veth_into(made["veth"], made["netns"])
        ip("link", "set", made["veth"], "master", made["bridge"])
        ip("link", "set", made["veth"], "up")
        yield made
    finally:
        subprocess.run(["ip", "link", "del", made["veth"]], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", made["netns"]], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", made["bridge"]], capture_output=True, check=False)


@contextlib.contextmanager
def held_namespace_veth() -> Iterator[str]:
    """A veth into a namespace that only a process holds (no bind mount), as LXC's,
    systemd-nspawn's or rootless Podman's are: off every bridge."""
    tag = uuid.uuid4().hex[:4]
    netns, veth = f"dhp{tag}", f"vdhp{tag}"
    holder: subprocess.Popen[bytes] | None = None
    try:
        ip("netns", "add", netns)
        veth_into(veth, netns)
        holder = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "600"])
        wait_for(
            lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep",
            timeout=10,
            interval=0.02,
        )
        ip("netns", "del", netns)  # now only the sleeper keeps it
        yield veth
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        if holder is not None:
            holder.kill()
            holder.wait()


def test_foreign_namespaces_are_reported_never_judged(
    containers: Containers, podman_engine: None
) -> None:
    docker_one = containers.run("beside")
    with cni_pod() as pod, held_namespace_veth() as held, podman_container("beside") as podman:
        podman_veth = host_veth_of(podman.pid)
        _, samples = sample_once(NETWORK)

    orphans, missing = judged(samples)
    assert orphans == []
    assert missing == []
    assert owner_of(samples, pod["veth"]) == ("foreign", f"/run/netns/{pod['netns']}")
    assert owner_of(samples, held) == ("foreign", "process:sleep")
    kind, owner = owner_of(samples, podman_veth)
    # Podman pins its namespace under /run/netns (netns-<uuid>), on its own bridge.
    assert kind == "foreign"
    assert select(samples, "docker_host_bridge_info", bridge=podman.bridge, network="")
    assert owner.startswith("/run/netns/"), owner
    assert value(samples, "docker_host_veths", status="foreign") >= 3
    # The Docker container beside them is still paired and judged.
    docker_veth = host_veth_of(docker_one.attrs["State"]["Pid"])
    assert owner_of(samples, docker_veth) == ("container", docker_one.name)
    assert select(samples, "docker_host_veth_info", interface=docker_veth)


@contextlib.contextmanager
def left_sandbox(on_bridge: str | None) -> Iterator[str]:
    """A namespace bind-mounted where dockerd keeps an overlay load balancer's (lb_<network
    id>), for a network that does not exist, with a veth into it: what a sandbox dockerd
    failed to tear down looks like to the kernel."""
    tag = uuid.uuid4().hex[:12]
    netns, veth = f"dhs{tag[:4]}", f"vdhs{tag[:4]}"
    target = Path(f"/run/docker/netns/lb_{tag}")
    try:
        ip("netns", "add", netns)
        veth_into(veth, netns)
        if on_bridge:
            ip("link", "set", veth, "master", on_bridge)
        target.touch()
        subprocess.run(
            ["mount", "--bind", f"/run/netns/{netns}", str(target)], check=True, timeout=30
        )
        ip("netns", "del", netns)  # only dockerd's directory holds it now
        yield veth
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, check=False)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


def test_a_sandbox_no_network_justifies_is_orphaned(engine: Any) -> None:
    with left_sandbox(on_bridge=None) as veth:
        _, samples = sample_once(NETWORK)
    assert owner_of(samples, veth)[0] == "docker_sandbox"
    assert owner_of(samples, veth)[1].startswith("lb_")
    assert value(samples, "docker_host_veth_orphaned", interface=veth) == 1
    assert select(samples, "docker_host_veth_orphaned", interface=veth, reason="stale_sandbox")


def test_owners_are_read_without_a_mount_table_once_known(engine: Any) -> None:
    """A second reading finds the same owners from the mount points it knew: the owner
    reader reads no mount table while the namespaces it looks for are where they were."""

    with cni_pod() as pod:
        reader, host = NetworkSource(timeout=10.0), Host.open()
        try:
            first = reader.sample(host.tick())[0]
            owners = reader.reader._owners
            assert owners is not None
            reads: list[str] = []
            real = owners._mount_candidates

            def counting(*args: Any) -> Any:
                reads.append("mountinfo")
                return real(*args)

            owners._mount_candidates = counting  # type: ignore[method-assign,assignment]
            second = reader.sample(host.tick())[0]
        finally:
            reader.close()
            host.close()
    wanted = {o.name for o in first.namespace_owners}
    assert f"/run/netns/{pod['netns']}" in wanted
    assert {o.name for o in second.namespace_owners} == wanted
    assert reads == []
