"""Immutable facts the readers return. Plain data: no I/O, no behaviour beyond small derivations.

Facts are what one collector run observed; joins (plumbing.py) and rendering (metrics.py) are pure
functions of them, which is what lets the recorded fixtures in tests/ drive everything above the
readers without root or an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

# The namespaces a container can have of its own, in the order `lsns` lists them.
NAMESPACE_KINDS: tuple[str, ...] = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")

# The containerd namespace Docker runs its containers in; shims of other namespaces (a
# Kubernetes node's "k8s.io", nerdctl's "default") are not Docker's to judge.
DOCKER_RUNTIME_NAMESPACE = "moby"

# The states the Engine API reports for a container; every one is exported, zero when empty,
# so a dashboard does not lose a line when the last container leaves a state.
CONTAINER_STATES: tuple[str, ...] = (
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
)


@dataclass(frozen=True, order=True)
class PublishedPort:
    """A port the Engine API lists for a container: host side and container side."""

    protocol: str
    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class ContainerRecord:
    """One container as the Engine API's list endpoint reports it (no inspect needed)."""

    id: str
    name: str
    image: str
    image_id: str
    state: str
    network_mode: str
    created: float
    ports: tuple[PublishedPort, ...] = ()
    addresses: tuple[str, ...] = ()  # IPv4 addresses on its networks
    ipv6_addresses: tuple[str, ...] = ()  # global IPv6 addresses on its networks
    # (key, value) of its Docker labels whose keys were allowlisted; no other label is kept.
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class EngineComponent:
    name: str
    version: str


@dataclass(frozen=True)
class DockerNetwork:
    """A Docker network as GET /networks reports it."""

    id: str
    name: str
    driver: str
    bridge: str  # the Linux bridge backing it; "" for drivers without one
    subnets: tuple[str, ...]
    internal: bool
    ip_masquerade: bool
    enable_ipv6: bool = False
    # com.docker.network.bridge.gateway_mode_ipv6 (Docker 27+): "nat" (or unset) and
    # "nat-unprotected" NAT the network's IPv6 traffic; "routed" and "isolated" do not.
    gateway_mode_ipv6: str = ""
    # Swarm's routing-mesh network: it justifies the ingress_sbox namespace on this node.
    ingress: bool = False


@dataclass(frozen=True)
class EngineFacts:
    """What one run of the Docker API reader saw."""

    containers: tuple[ContainerRecord, ...]
    components: tuple[EngineComponent, ...]
    api_version: str
    networks: tuple[DockerNetwork, ...] = ()


@dataclass(frozen=True)
class NamespaceLink:
    """A namespace as `/proc/PID/ns/<kind>` names it: kind and inode."""

    kind: str
    inode: int


@dataclass(frozen=True)
class ShimFacts:
    """A containerd shim and the container it holds, read from /proc alone.

    The shim is reparented to PID 1 when containerd starts it, so the link to its container is its
    `-id` argument and being the parent of the container's PID 1, never a process-tree ancestry
    from dockerd.
    """

    shim_pid: int
    shim_start_time: float
    container_id: str
    runtime_namespace: str
    pid1: int | None
    pid1_start_time: float | None
    namespaces: tuple[NamespaceLink, ...]
    unreadable_namespaces: tuple[str, ...]
    processes: int
    zombies: int


@dataclass(frozen=True)
class DaemonProcess:
    """dockerd or containerd as /proc shows it."""

    name: str
    pid: int
    start_time: float


@dataclass(frozen=True)
class ProcessFacts:
    """What one run of the /proc reader saw."""

    host_namespaces: tuple[NamespaceLink, ...]
    shims: tuple[ShimFacts, ...]
    daemons: tuple[DaemonProcess, ...]
    processes_scanned: int


@dataclass(frozen=True)
class LinkCounters:
    """IFLA_STATS64 as the host side of a link counts them."""

    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    rx_dropped: int
    tx_dropped: int
    rx_errors: int
    tx_errors: int


@dataclass(frozen=True)
class Link:
    """A network interface as one RTM_NEWLINK message describes it."""

    index: int
    name: str
    kind: str
    master: int | None
    peer_index: int | None  # IFLA_LINK: the peer's ifindex, in the peer's namespace
    peer_nsid: int | None  # IFLA_LINK_NETNSID: None when the peer is in this namespace
    operstate: str
    port_state: str | None  # STP state, when this link is a bridge port
    stp_enabled: bool | None  # when this link is a bridge
    counters: LinkCounters | None


@dataclass(frozen=True)
class ContainerNetns:
    """A running container's network namespace, and the id the host's namespace gives it."""

    container_id: str
    pid: int
    inode: int
    nsid: int | None  # None while the host has assigned it no id


# Who holds a network namespace a host veth leads into (NamespaceOwner.kind):
OWNER_CONTAINER = "container"  # a Docker container's processes (a ContainerNetns)
OWNER_DOCKER_SANDBOX = "docker_sandbox"  # dockerd's bind mount under <exec-root>/netns/
OWNER_FOREIGN = "foreign"  # another bind mount (ip netns, CNI, Podman) or a process not Docker's
OWNER_UNKNOWN = "unknown"  # could not be read: a refused mountinfo or /proc/PID/ns/net
OWNER_NONE = "none"  # nothing this reader can see holds it
OWNER_HOST = "host"  # both ends of the veth are in the host's namespace


@dataclass(frozen=True)
class NamespaceOwner:
    """A network namespace behind a host veth that no Docker container's process is in.

    kind: docker_sandbox (name: the file under dockerd's netns directory, such as
    ingress_sbox or lb_<network id>), foreign (name: the bind mount's path, or the holding
    process's comm) or unknown (name: why).
    """

    nsid: int
    inode: int | None
    kind: str
    name: str


@dataclass(frozen=True)
class PeerLink:
    """The far end of a host veth, looked up in the peer's namespace.

    name is None when the link is absent there, or when the lookup was refused (refused=True:
    it needs CAP_NET_ADMIN), which proves nothing about the peer.
    """

    nsid: int
    index: int
    name: str | None
    refused: bool = False


@dataclass(frozen=True)
class NetworkFacts:
    """What one run of the network reader saw."""

    links: tuple[Link, ...]
    container_netns: tuple[ContainerNetns, ...]
    peers: tuple[PeerLink, ...]
    unreadable_netns: int  # containers whose /proc/PID/ns/net could not be opened
    # (ifindex, name) of veths that looked orphaned in a first reading, taken a moment before
    # this one; only those may be reported orphaned (see plumbing.veth_views).
    earlier_suspects: tuple[tuple[int, str], ...] = ()
    # The owners of the namespaces veths lead into that no container's process is in.
    namespace_owners: tuple[NamespaceOwner, ...] = ()


@dataclass(frozen=True)
class NatRule:
    """A nat rule that masquerades or DNATs, decoded from either firewall backend.

    backend: "legacy" (ip_tables / ip6_tables as libiptc reads them) or "nftables" (nf_tables:
    rules made by iptables-nft, by nft, or by Docker's own nftables firewall backend).
    family: "ipv4" (iptables, nft's ip tables) or "ipv6" (ip6tables, nft's ip6 tables).
    """

    backend: str
    table: str
    chain: str
    action: str  # "masquerade" or "dnat"
    source: str | None  # CIDR
    destination: str | None
    in_interface: str | None  # iptables notation: a trailing + is a prefix wildcard
    in_negated: bool
    out_interface: str | None
    out_negated: bool
    protocol: str | None
    dport: int | None
    to_address: str | None  # dnat only
    to_port: int | None
    packets: int
    bytes: int
    family: str = "ipv4"


@dataclass(frozen=True)
class FirewallBackend:
    """What one backend holds: its nat rules (all, not only ours), its chains, or why it could
    not be read."""

    name: str
    readable: bool
    error: str | None
    nat_rules: int
    docker_chains: tuple[str, ...]  # "table/chain" of the chains Docker made there
    # Unreadable for lack of these (empty: for another reason, such as missing libraries).
    missing_capabilities: tuple[str, ...] = ()
    # The same for IPv6 (ip6_tables; nf_tables' ip6 family): nat rules, Docker's chains.
    nat_rules_ipv6: int = 0
    docker_chains_ipv6: tuple[str, ...] = ()


@dataclass(frozen=True)
class NatExpectations:
    """What Docker's networks and published ports need, from the Engine API."""

    networks: tuple[DockerNetwork, ...]
    containers: tuple[ContainerRecord, ...]


@dataclass(frozen=True)
class NatFacts:
    backends: tuple[FirewallBackend, ...]
    rules: tuple[NatRule, ...]
    expectations: NatExpectations | None  # None when the Engine API could not be read
    # Keys of the expectations that looked unmet in a first reading a moment before this one.
    earlier_missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class DaemonConfigFacts:
    """dockerd's configuration as written and as running. Values that may hold a secret
    (proxy URLs, credentials in a mirror URL) are redacted by the reader before they get here."""

    pid: int | None
    start_time: float | None
    flag_keys: tuple[str, ...]  # config keys given on the command line
    config_path: str
    config_path_explicit: bool  # --config-file was given
    file_present: bool
    file_error: str | None  # unreadable, unparsable, not an object, too large
    file_mtime: float | None
    file_values: tuple[tuple[str, str], ...]  # key -> canonical JSON of its value
    info: str | None  # the compared subset of GET /info, canonical JSON
    reloads: tuple[tuple[float, str], ...]  # (time, attributes as canonical JSON) since start
    docker_error: str | None
    unit_path: str = ""
    unit_exec_start: str = ""
    unit_environment_file: str = ""
    unit_flag_keys: tuple[str, ...] = ()
    # dockerd's root (/proc/PID/root) was refused: the file and the unit were not judged.
    # The kernel asks for CAP_SYS_PTRACE over a process with more capabilities than ours.
    root_refused: bool = False

    @classmethod
    def unknown(cls, reason: str, info: str | None = None) -> DaemonConfigFacts:
        return cls(None, None, (), "", False, False, None, None, (), info, (), reason)


@dataclass(frozen=True)
class LayerFacts:
    """A read-only layer, identified by its chain id (its content and everything below it)."""

    chain_id: str
    diff_id: str
    size: int


@dataclass(frozen=True)
class ImageFacts:
    id: str
    tags: tuple[str, ...]
    layers: tuple[str, ...]  # chain ids, base first
    size: int
    shared_size: int  # as the engine's /system/df reports it
    containers: int

    @property
    def dangling(self) -> bool:
        return not any(tag != "<none>:<none>" for tag in self.tags)

    @property
    def unique_size(self) -> int:
        return self.size - max(self.shared_size, 0)


@dataclass(frozen=True)
class ContainerLayer:
    """A container's thin read/write layer, and the size of its whole filesystem."""

    id: str
    name: str
    image_id: str
    size_rw: int
    size_root_fs: int


@dataclass(frozen=True)
class LayersFacts:
    images: tuple[ImageFacts, ...]
    layers: tuple[LayerFacts, ...]
    containers: tuple[ContainerLayer, ...]
    layers_size: int  # bytes the layers take on disk, each once (/system/df LayersSize)
