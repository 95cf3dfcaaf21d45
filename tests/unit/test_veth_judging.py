"""Veth pairing and orphan judging on constructed facts: who holds each namespace decides
whether a veth is Docker's to judge at all. No root, no interfaces of this host."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from exporter.collectors.containers.judge import Inventory
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.network.judge import (
    NetnsOwner,
    _netns_owners,
    orphan_suspects,
    sandbox_justified,
    veth_views,
)
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, EngineFacts
from exporter.readers.netlink import Link
from exporter.readers.netns import NamespaceOwner, classify_mount, exec_root, parse_nsfs_mounts
from exporter.readers.network import ContainerNetns, PeerLink
from exporter.readers.own_container import (
    container_id_from_cgroup,
    container_id_from_mountinfo,
    procfs_in_own_container,
)

CID = "c" * 64
DOCKER0 = Link(5, "docker0", "bridge", None, None, None, "up", None, False, None)
GWBRIDGE = Link(6, "docker_gwbridge", "bridge", None, None, None, "up", None, False, None)
CNI0 = Link(7, "cni0", "bridge", None, None, None, "up", None, False, None)
BRIDGE_NET = DockerNetwork("b" * 64, "bridge", "bridge", "docker0", ("172.17.0.0/16",), False, True)
GW_NET = DockerNetwork("g" * 64, "docker_gwbridge", "bridge", "docker_gwbridge", (), False, True)
INGRESS = DockerNetwork("jvh369tohxqy", "ingress", "overlay", "", (), False, False, ingress=True)


def veth(index: int, name: str, master: int | None, nsid: int | None, peer: int = 2) -> Link:
    return Link(index, name, "veth", master, peer, nsid, "up", "forwarding", None, None)


def inventory(*networks: DockerNetwork) -> Inventory:
    web = ContainerRecord(CID, "web", "img", "sha256:1", "running", "bridge", 0.0)
    engine = EngineFacts((web,), (), "1.41", networks or (BRIDGE_NET, GW_NET))
    return Inventory(engine)


def net(*links: Link, owners: tuple[NamespaceOwner, ...] = (), unreadable: int = 0) -> NetworkFacts:
    """The web container's namespace is nsid 0; every veth's peer exists as eth0. Every
    suspect was already one in the reading before (the confirmation is tested apart)."""
    all_links = (DOCKER0, GWBRIDGE, CNI0, *links)
    return NetworkFacts(
        links=all_links,
        container_netns=(ContainerNetns(CID, 100, 4026532001, 0),),
        peers=tuple(
            PeerLink(link.peer_nsid, link.peer_index or 0, "eth0")
            for link in links
            if link.peer_nsid is not None
        ),
        unreadable_netns=unreadable,
        earlier_suspects=tuple((link.index, link.name) for link in all_links),
        namespace_owners=owners,
    )


def judged(
    facts: NetworkFacts, known: Inventory | None = None
) -> dict[str, tuple[str, str | None]]:
    """interface -> (status, orphan reason)."""
    return {
        v.link.name: (v.status, v.orphan_reason)
        for v in veth_views(facts, known if known is not None else inventory())
    }


def test_a_container_veth_is_paired_with_its_interface() -> None:
    views = veth_views(net(veth(10, "vethweb", 5, 0)), inventory())
    (view,) = views
    assert (view.container, view.container_interface, view.status) == ("web", "eth0", "paired")
    assert view.network == BRIDGE_NET
    assert (view.owner_kind, view.owner) == ("container", "web")


def test_foreign_namespaces_off_docker_bridges_are_never_judged() -> None:
    facts = net(
        veth(11, "vethpod", 7, 1),  # a CNI pod on cni0
        veth(12, "vethlxc", None, 2),  # an LXC container held by its init, no bridge
        veth(13, "vethnone", None, 3),  # nothing visible holds it
        owners=(
            NamespaceOwner(1, 9001, "foreign", "/run/netns/cni-1234"),
            NamespaceOwner(2, 9002, "foreign", "process:init"),
            NamespaceOwner(3, None, "none", ""),
        ),
    )
    assert judged(facts) == {
        "vethpod": ("foreign", None),
        "vethlxc": ("foreign", None),
        "vethnone": ("foreign", None),
    }


def test_on_a_docker_bridge_whatever_is_not_docker_is_an_orphan() -> None:
    facts = net(
        veth(11, "vorph", 5, 1),
        veth(12, "vstray", 5, 2),
        owners=(
            NamespaceOwner(1, 9001, "foreign", "/run/netns/dho1"),
            NamespaceOwner(2, 9002, "none", ""),
        ),
    )
    assert judged(facts) == {
        "vorph": ("orphaned", "no_container"),
        "vstray": ("orphaned", "no_container"),
    }


def test_an_unknown_owner_is_never_an_orphan_even_on_docker0() -> None:
    facts = net(
        veth(11, "vunk", 5, 1),
        owners=(NamespaceOwner(1, None, "unknown", "/proc/1/mountinfo refused"),),
    )
    assert judged(facts) == {"vunk": ("unknown", None)}


def test_nothing_is_judged_while_a_container_namespace_is_unreadable() -> None:
    facts = net(
        veth(11, "vorph", 5, 1),
        owners=(NamespaceOwner(1, 9001, "foreign", "/run/netns/x"),),
        unreadable=1,
    )
    assert judged(facts) == {"vorph": ("foreign", None)}


def test_swarm_sandboxes_are_judged_against_the_networks_that_justify_them() -> None:
    facts = net(
        veth(11, "vingress", 6, 1),
        owners=(NamespaceOwner(1, 9001, "docker_sandbox", "ingress_sbox"),),
    )
    in_swarm = inventory(BRIDGE_NET, GW_NET, INGRESS)
    assert judged(facts, in_swarm) == {"vingress": ("docker_sandbox", None)}
    # After `docker swarm leave` the ingress network is gone: a sandbox left behind leaks.
    assert judged(facts, inventory(BRIDGE_NET, GW_NET)) == {
        "vingress": ("orphaned", "stale_sandbox")
    }


def test_sandbox_names() -> None:
    assert sandbox_justified("ingress_sbox", [INGRESS]) is True
    assert sandbox_justified("ingress_sbox", [BRIDGE_NET]) is False
    assert sandbox_justified("lb_jvh369toh", [INGRESS]) is True
    assert sandbox_justified("1-jvh369tohx", [INGRESS]) is True
    assert sandbox_justified("lb_0123456789", [INGRESS]) is False
    # A container's sandbox with no container process in it is left over.
    assert sandbox_justified("30ea00c3eebb", [BRIDGE_NET]) is False
    assert sandbox_justified("something-else", []) is None


def test_a_container_sandbox_nothing_runs_in_is_no_container() -> None:
    facts = net(
        veth(11, "vleft", None, 1),
        owners=(NamespaceOwner(1, 9001, "docker_sandbox", "30ea00c3eebb"),),
    )
    assert judged(facts) == {"vleft": ("orphaned", "no_container")}


def test_an_orphan_needs_the_earlier_reading_too() -> None:
    facts = replace(
        net(veth(11, "vorph", 5, 1), owners=(NamespaceOwner(1, 9001, "none", ""),)),
        earlier_suspects=(),
    )
    assert judged(facts) == {"vorph": ("foreign", None)}


def test_suspects_skip_other_runtimes_bridges_without_a_container_list() -> None:
    facts = net(
        veth(11, "vethpod", 7, 1),  # on cni0: another runtime's bridge
        veth(12, "vorph", 5, 2),  # on docker0
        veth(13, "vingress", 6, 3),
        owners=(
            NamespaceOwner(1, 9001, "foreign", "/run/netns/cni-1"),
            NamespaceOwner(2, 9002, "foreign", "/run/netns/dho1"),
            NamespaceOwner(3, 9003, "docker_sandbox", "ingress_sbox"),
        ),
    )
    # Without a container list every sandbox is looked at again.
    assert {name for _, name in orphan_suspects(facts)} == {"vorph", "vingress"}
    # With the last one, the ingress network justifies its sandbox.
    swarm = EngineFacts((), (), "1.41", (BRIDGE_NET, GW_NET, INGRESS))
    assert {name for _, name in orphan_suspects(facts, swarm)} == {"vorph"}


def test_a_veth_whose_peer_is_gone_is_docker_only_on_docker_bridges() -> None:
    gone = NetworkFacts(
        links=(DOCKER0, CNI0, veth(11, "vgone", 5, 1), veth(12, "vpodgone", 7, 2)),
        container_netns=(),
        peers=(PeerLink(1, 2, None), PeerLink(2, 2, None)),
        unreadable_netns=0,
        earlier_suspects=((11, "vgone"), (12, "vpodgone")),
        namespace_owners=(
            NamespaceOwner(1, 9001, "foreign", "/run/netns/a"),
            NamespaceOwner(2, 9002, "foreign", "/run/netns/b"),
        ),
    )
    assert judged(gone) == {"vgone": ("orphaned", "peer_gone"), "vpodgone": ("foreign", None)}


MOUNTINFO = """\
25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
50 48 0:4 net:[4026532254] /run/netns/dhe\\040x rw shared:4 - nsfs nsfs rw
43 27 0:4 net:[4026532178] /run/docker/netns/ingress_sbox rw - nsfs nsfs rw
44 27 0:4 mnt:[4026532300] /run/some/mnt rw - nsfs nsfs rw
135 27 0:4 net:[4026532331] /tmp/dh6/exec/netns/c93e1ac8e9a6 rw - nsfs nsfs rw
"""


def test_nsfs_mounts_are_read_from_mountinfo() -> None:
    mounts = parse_nsfs_mounts(MOUNTINFO)
    assert [(m.mount_point, m.inode) for m in mounts] == [
        ("/run/netns/dhe x", 4026532254),
        ("/run/docker/netns/ingress_sbox", 4026532178),
        ("/tmp/dh6/exec/netns/c93e1ac8e9a6", 4026532331),
    ]
    dirs = [exec_root(["dockerd"]) + "/netns", exec_root(["dockerd", "--exec-root=/tmp/dh6/exec"])]
    dirs[1] += "/netns"
    assert classify_mount("/run/docker/netns/ingress_sbox", dirs) == (
        "docker_sandbox",
        "ingress_sbox",
    )
    assert classify_mount("/tmp/dh6/exec/netns/c93e1ac8e9a6", dirs) == (
        "docker_sandbox",
        "c93e1ac8e9a6",
    )
    assert classify_mount("/run/netns/cni-1", dirs) == ("foreign", "/run/netns/cni-1")
    # Not directly under the directory: not one of dockerd's.
    assert classify_mount("/run/docker/netns/x/y", dirs) == ("foreign", "/run/docker/netns/x/y")
    assert exec_root(["dockerd", "--exec-root", "/srv/run"]) == "/srv/run"


def test_own_container_from_mountinfo_or_cgroup() -> None:
    line = (
        f"139 96 254:0 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw,relatime "
        "- ext4 /dev/vda rw"
    )
    assert container_id_from_mountinfo(MOUNTINFO) is None
    assert container_id_from_mountinfo(MOUNTINFO + line + "\n") == CID
    assert container_id_from_cgroup(f"0::/docker/{CID}\n") == CID
    assert container_id_from_cgroup(f"0::/system.slice/docker-{CID}.scope\n") == CID
    assert container_id_from_cgroup("0::/\n") is None
    assert container_id_from_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") is None


def test_a_procfs_showing_the_exporters_own_container_is_told_apart(tmp_path: Path) -> None:
    """Started without --pid=host and without the host's /proc, PID 1 of the procfs is in the
    exporter's own container; the host's /proc (mounted anywhere) or no container at all is
    not refused."""
    mounted = (
        f"139 96 254:0 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw,relatime "
        "- ext4 /dev/vda rw\n"
    )

    def proc(name: str, mountinfo: str, cgroup: str) -> Path:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "mountinfo").write_text(mountinfo)
        (tmp_path / name / "cgroup").write_text(cgroup)
        return tmp_path / name

    me = proc("self", MOUNTINFO + mounted, "0::/\n")
    proc("own/1", MOUNTINFO + mounted, "0::/\n")
    proc("host/1", MOUNTINFO, "0::/init.scope\n")
    proc("bare/self", MOUNTINFO, "0::/user.slice\n")
    assert procfs_in_own_container(tmp_path / "own", me) == CID
    assert procfs_in_own_container(tmp_path / "host", me) is None
    assert procfs_in_own_container(tmp_path / "host", tmp_path / "bare" / "self") is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a" * 64, "b" * 64, "c" * 64, "d" * 64]),
            st.integers(1, 400),  # pid
            st.integers(4026532000, 4026532005),  # inode: a few, so some are shared
            st.one_of(st.none(), st.integers(0, 5)),  # nsid
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_namespace_owners_group_by_inode_whether_shared_or_not(
    found: list[tuple[str, int, int, int | None]], listed: bool
) -> None:
    """The owners in inode order: a namespace no other container is in is its container's
    (the common case, made in C), a shared one the non-`container:` member's, else the
    lowest pid's."""
    netns = tuple(ContainerNetns(*each) for each in found)
    facts = NetworkFacts(
        links=(), container_netns=netns, peers=(), unreadable_netns=0, earlier_suspects=()
    )
    records = tuple(
        ContainerRecord(cid, cid[:3], "img", "sha256:1", "running", mode, 0.0)
        for cid, mode in (("a" * 64, "bridge"), ("b" * 64, "container:" + "a" * 64))
    )
    owners = _netns_owners(facts, records if listed else None)
    modes = {r.id: r.network_mode for r in records} if listed else {}
    expected = []
    for inode in sorted({n.inode for n in netns}):
        members = sorted(
            (n for n in netns if n.inode == inode),
            key=lambda m: (modes.get(m.container_id, "").startswith("container:"), m.pid),
        )
        sharers = tuple(m for m in members[1:] if m.container_id != members[0].container_id)
        expected.append(NetnsOwner(inode, members[0].nsid, members[0], sharers))
    assert owners == tuple(expected)
    assert all(type(owner) is NetnsOwner for owner in owners)
