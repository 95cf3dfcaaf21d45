"""One verdict per published port, hop by hop along the paths its connections really take
(paths.py: which hops each kind of binding crosses with userland-proxy on or off), joining what
the collectors know: the DNAT and the per-port hairpin MASQUERADE (nat), the FORWARD accept and
IP forwarding (firewall), the container's veth and bridge port (network), a listener inside the
container and dockerd's userland proxy (ports). Pure: recorded and constructed facts drive it.

A hop is ok, restricted (whole, but a rule drops some sources' connections: the forward hop),
broken, unknown (what it needs could not be read: never a guessed "broken") or not judged (it is
on no path of the binding: a loopback binding served by docker-proxy has no DNAT on its path;
the network's MASQUERADE is on no inbound path at all; Docker manages no firewall; the userland
proxy is off). A port is broken at its first broken hop, in HOPS order; else unknown if any hop
is; else restricted if any hop is; else ok. A hop is broken only when two readings a moment
apart agree: nat and firewall confirm their rules, this collector's source its own hops
(suspect_keys)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.firewall.judge import (
    Cut,
    FilterIndex,
    filter_index,
    forward_key,
    forward_verdict,
    forwarding_key,
    forwarding_on,
)
from exporter.collectors.nat.facts import NatFacts
from exporter.collectors.nat.judge import (
    IPV4,
    IPV6,
    ExpectedDnat,
    HairpinIndex,
    docker_firewall,
    hairpin_key,
    judged_families,
    nat_verdicts,
)
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.ports import paths
from exporter.collectors.ports.facts import ContainerListeners, PortsFacts
from exporter.collectors.ports.paths import HOPS
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, PublishedPort
from exporter.readers.netlink import Link
from exporter.readers.proc_net import TCP, BoundSocket, ProxyProcess

OK, BROKEN, UNKNOWN, NOT_JUDGED = "ok", "broken", "unknown", "not_judged"
# Whole, but some sources' connections are dropped on the way (a DOCKER-USER allowlist).
RESTRICTED = "restricted"
VERDICTS = (OK, RESTRICTED, BROKEN, UNKNOWN)
_ANY = ("0.0.0.0", "::")  # noqa: S104 (addresses read, not bound)


@dataclass(frozen=True)
class Hop:
    name: str
    state: str  # OK, RESTRICTED, BROKEN, UNKNOWN or NOT_JUDGED
    reason: str = ""
    cuts: tuple[Cut, ...] = ()  # RESTRICTED: the rules that drop some sources, and which


@dataclass(frozen=True)
class PortVerdict:
    container: str
    container_id: str
    port: PublishedPort
    hops: tuple[Hop, ...]

    @property
    def host_address(self) -> str:
        return host_address(self.port)

    @property
    def family(self) -> str:
        return IPV6 if ":" in self.host_address else IPV4

    @property
    def verdict(self) -> str:
        states = {h.state for h in self.hops}
        return next((s for s in (BROKEN, UNKNOWN, RESTRICTED) if s in states), OK)

    @property
    def first(self) -> Hop | None:
        """The first broken hop; for an unknown (restricted) verdict the first unknown
        (restricted) one."""
        wanted = {BROKEN: BROKEN, UNKNOWN: UNKNOWN, RESTRICTED: RESTRICTED}.get(self.verdict)
        return next((h for h in self.hops if h.state == wanted), None)

    @property
    def text(self) -> str:
        """As `docker port` prints it: 0.0.0.0:8080->80/tcp."""
        address = self.host_address
        shown = f"[{address}]" if ":" in address else address
        return f"{shown}:{self.port.host_port}->{self.port.container_port}/{self.port.protocol}"


def host_address(port: PublishedPort) -> str:
    """The address a port is published on, canonical; an empty one is every IPv4 address."""
    return _canonical(port.host_ip)


@functools.lru_cache(maxsize=256)
def _canonical(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text)) if text else "0.0.0.0"  # noqa: S104
    except ValueError:
        return text


# -- the keys of what this collector's own source reads, for its confirming second reading --


def listener_key(container_id: str, port: PublishedPort) -> str:
    return f"listener/{container_id}/{port.protocol}/{port.container_port}"


def proxy_key(port: PublishedPort) -> str:
    return f"proxy/{port.protocol}/{host_address(port)}/{port.host_port}"


def listens(
    sockets: Iterable[BoundSocket], protocol: str, port: int, addresses: Iterable[str]
) -> bool:
    """A socket of the protocol on the port, bound to any address or to one of the
    container's (an IPv4 address may show as IPv4-mapped IPv6)."""
    accepted = set(_ANY) | set(addresses) | {f"::ffff:{a}" for a in addresses if ":" not in a}
    return any(s.protocol == protocol and s.port == port and s.address in accepted for s in sockets)


def proxied(proxies: Iterable[ProxyProcess]) -> frozenset[tuple[str, str, int, int]]:
    """What the docker-proxy processes serve: (protocol, host address, host port, container
    port), to look ports up in."""
    return frozenset((p.protocol, p.host_ip, p.host_port, p.container_port) for p in proxies)


def has_proxy(served: frozenset[tuple[str, str, int, int]], port: PublishedPort) -> bool:
    return (port.protocol, host_address(port), port.host_port, port.container_port) in served


def _container_addresses(container: ContainerRecord) -> tuple[str, ...]:
    return container.addresses + container.ipv6_addresses


def suspect_keys(ports: PortsFacts) -> tuple[str, ...]:
    """What looks broken in this reading of the source's own hops: a second reading looks again
    at these. A missing docker-proxy is a suspect only where dockerd runs proxies at all (some
    docker-proxy runs, or its flag turns them on): with userland-proxy off every port lacks
    one, and each run would read twice for nothing. The judge decides from dockerd's setting
    whether the hop applies; one that all proxies left stays unknown, never a false broken."""
    found: list[str] = []
    if ports.containers is None:
        return ()
    proxies_run = ports.userland_proxy is True or (
        ports.userland_proxy is None and bool(ports.proxies)
    )
    served = proxied(ports.proxies)
    listeners = {c.container_id: c for c in ports.listeners}
    for container in ports.containers:
        read = listeners.get(container.id)
        for port in container.ports:
            if (
                read is not None
                and read.error is None
                and not listens(
                    read.sockets,
                    port.protocol,
                    port.container_port,
                    _container_addresses(container),
                )
            ):
                found.append(listener_key(container.id, port))
            if proxies_run and not has_proxy(served, port):
                found.append(proxy_key(port))
    return tuple(dict.fromkeys(found))


# -- the hops ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NatView:
    """nat's verdicts worked out once for all ports: DNATs by (container id, family, protocol,
    host port), the hairpin DNATs and MASQUERADEs. (The network's MASQUERADE is on no inbound
    path: not looked at.)"""

    nat: NatFacts
    dnats: dict[tuple[str, str, str, int], tuple[ExpectedDnat, bool]]
    # The firewall collector's reading, indexed once for every port's forward hop; None: none.
    filters: FilterIndex | None
    no_firewall: bool  # Docker manages no firewall here
    judged: dict[str, bool]  # whether nat judges DNATs of each family
    hairpin: HairpinIndex

    @classmethod
    def of(cls, nat: NatFacts | None, fw: FirewallFacts | None) -> _NatView | None:
        if nat is None:
            return None
        _, dnats = nat_verdicts(nat)
        return cls(
            nat,
            {(d.container_id, d.family, d.protocol, d.host_port): (d, gone) for d, gone in dnats},
            filter_index(fw) if fw is not None else None,
            docker_firewall(nat.backends) == ("none",),
            judged_families(nat),
            HairpinIndex.of(nat.rules),
        )


def _dnat_hop(  # noqa: PLR0911 (one return per verdict)
    container: ContainerRecord, port: PublishedPort, view: _NatView | None
) -> Hop:
    family = IPV6 if ":" in host_address(port) else IPV4
    if view is None:
        return Hop("dnat", UNKNOWN, "the nat collector has no current reading")
    if view.no_firewall:
        return Hop("dnat", NOT_JUDGED, "Docker manages no firewall")
    if not view.judged[family]:
        if family == IPV6:
            return Hop("dnat", NOT_JUDGED, "no IPv6 NAT: docker-proxy serves this binding")
        return Hop("dnat", UNKNOWN, "the nat rules could not be judged")
    found = view.dnats.get((container.id, family, port.protocol, port.host_port))
    if found is not None:
        expected, missing = found
        if missing:
            return Hop(
                "dnat",
                BROKEN,
                f"no DNAT {port.protocol}/{port.host_port} -> "
                f"{'|'.join(expected.addresses)}:{expected.container_port}",
            )
        return Hop("dnat", OK)
    if family == IPV6:
        return Hop("dnat", NOT_JUDGED, "no IPv6 address to DNAT to: docker-proxy serves it")
    return Hop("dnat", UNKNOWN, "not among the nat collector's expected rules yet")


def _forwarding_hop(family: str, fw: FirewallFacts | None) -> Hop:
    name = "net.ipv4.ip_forward" if family == IPV4 else "net.ipv6.conf.all.forwarding"
    on = forwarding_on(fw, family) if fw is not None else None
    if on is None:
        return Hop("ip_forward", UNKNOWN, f"{name} unread")
    if on:
        return Hop("ip_forward", OK)
    if fw is None or forwarding_key(family) not in fw.earlier_missing:
        return Hop("ip_forward", UNKNOWN, f"{name} = 0 in one reading only")
    return Hop("ip_forward", BROKEN, f"{name} = 0")


def _forward_hop(
    family: str,
    port: PublishedPort,
    address: str | None,
    network: DockerNetwork | None,
    view: _NatView | None,
) -> Hop:
    """The filter rules on the forward path (firewall's forward_verdict): the port's ACCEPT
    there, and no DROP or REJECT in DOCKER-USER or FORWARD before it."""
    if view is None or view.filters is None:
        which = "nat" if view is None else "firewall"
        return Hop("forward", UNKNOWN, f"the {which} collector has no current reading")
    if address is None or network is None:
        return Hop("forward", UNKNOWN, "no container address on a bridge network")
    key = forward_key(family, address, port.protocol, port.container_port)
    v = forward_verdict(
        view.filters, family, address, port.container_port, port.protocol, network.bridge
    )
    state, reason = v.state, v.reason
    if state in (OK, RESTRICTED):  # a restriction is the operator's rule: nothing to confirm
        return Hop("forward", state, reason if state == RESTRICTED else "", v.cuts)
    if state != "broken":
        return Hop("forward", UNKNOWN, reason)
    if key not in view.filters.facts.earlier_missing:
        return Hop("forward", UNKNOWN, f"{reason}, in one reading only")
    return Hop("forward", BROKEN, reason)


def _in_subnet(address: str, subnet: str) -> bool:
    """Whether an address is in a subnet, both texts parsed once per process (the same few
    subnets and every container's address come back every sample)."""
    ip, network = _ip(address), _network(subnet)
    return ip is not None and network is not None and ip in network


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def network_of(
    container: ContainerRecord, networks: Iterable[DockerNetwork]
) -> DockerNetwork | None:
    """The bridge network a DNAT to the container reaches it on: the one whose subnet holds
    its (first) IPv4 address."""
    for text in container.addresses:
        for network in networks:
            if network.bridge and any(_in_subnet(text, subnet) for subnet in network.subnets):
                return network
    return None


def _address_on(
    container: ContainerRecord, network: DockerNetwork | None, family: str
) -> str | None:
    """The container's address of the family on the network (where a DNAT sends the port)."""
    if network is None:
        return None
    for text in container.addresses if family == IPV4 else container.ipv6_addresses:
        if any(_in_subnet(text, subnet) for subnet in network.subnets):
            return text
    return None


@dataclass(frozen=True)
class _LinkView:
    """The network collector's links, indexed once for all ports."""

    nsids: dict[str, set[int]]  # container id -> the nsids of its network namespaces
    bridges: dict[int, Link]  # ifindex -> bridge
    veths: dict[int, list[Link]]  # peer nsid -> host veths into it

    @classmethod
    def of(cls, net: NetworkFacts | None) -> _LinkView | None:
        if net is None:
            return None
        nsids: dict[str, set[int]] = {}
        for n in net.container_netns:
            if n.nsid is not None:
                nsids.setdefault(n.container_id, set()).add(n.nsid)
        veths: dict[int, list[Link]] = {}
        for link in net.links:
            if link.kind == "veth" and link.peer_nsid is not None:
                veths.setdefault(link.peer_nsid, []).append(link)
        bridges = {link.index: link for link in net.links if link.kind == "bridge"}
        return cls(nsids, bridges, veths)


def _link_hops(
    container: ContainerRecord, network: DockerNetwork | None, net: _LinkView | None
) -> tuple[Hop, Hop]:
    """The container's host veth on its network's bridge: up, and a forwarding bridge port."""
    if net is None:
        reason = "the network collector has no current reading"
        return Hop("veth", UNKNOWN, reason), Hop("bridge_port", UNKNOWN, reason)
    if network is None:
        reason = "no bridge network holds the container's address"
        return Hop("veth", NOT_JUDGED, reason), Hop("bridge_port", NOT_JUDGED, reason)
    nsids = net.nsids.get(container.id, set())
    if not nsids:
        reason = "the container's network namespace was not read"
        return Hop("veth", UNKNOWN, reason), Hop("bridge_port", UNKNOWN, reason)
    bridges = net.bridges
    veths = [v for nsid in sorted(nsids) for v in net.veths.get(nsid, [])]
    on_bridge = [
        v
        for v in veths
        if v.master is not None and v.master in bridges and bridges[v.master].name == network.bridge
    ]
    if not on_bridge:
        if len(veths) == 1 and len(nsids) == 1:
            veth = veths[0]
            master = bridges.get(veth.master) if veth.master is not None else None
            return _veth_hop(veth), Hop(
                "bridge_port",
                BROKEN,
                f"{veth.name} is not a port of {network.bridge}"
                + (f" (it is on {master.name})" if master is not None else ""),
            )
        reason = f"no veth of the container found on {network.bridge}"
        return Hop("veth", UNKNOWN, reason), Hop("bridge_port", UNKNOWN, reason)
    veth = on_bridge[0]
    if veth.port_state is None:
        port = Hop("bridge_port", UNKNOWN, f"no STP state for {veth.name}")
    elif veth.port_state == "forwarding":
        port = Hop("bridge_port", OK)
    else:
        port = Hop("bridge_port", BROKEN, f"{veth.name} on {network.bridge} is {veth.port_state}")
    return _veth_hop(veth), port


def _veth_hop(veth: Link) -> Hop:
    if veth.operstate == "up":
        return Hop("veth", OK)
    return Hop("veth", BROKEN, f"{veth.name} is {veth.operstate}")


def _listener_hop(
    container: ContainerRecord,
    port: PublishedPort,
    read: ContainerListeners | None,
    ports: PortsFacts,
) -> Hop:
    where = f"{port.protocol}/{port.container_port}"
    if read is None:
        return Hop("listener", UNKNOWN, "the container's sockets were not read")
    if read.error is not None:
        return Hop("listener", UNKNOWN, read.error)
    if listens(read.sockets, port.protocol, port.container_port, _container_addresses(container)):
        return Hop("listener", OK)
    if listener_key(container.id, port) not in ports.earlier_suspects:
        return Hop("listener", UNKNOWN, f"nothing on {where} in one reading only")
    elsewhere = sorted(
        s.address
        for s in read.sockets
        if s.protocol == port.protocol and s.port == port.container_port
    )
    if elsewhere:
        return Hop("listener", BROKEN, f"{where} bound to {', '.join(elsewhere)} only")
    kind = "listening" if port.protocol == TCP else "bound"
    return Hop("listener", BROKEN, f"nothing {kind} on {where}")


def _proxy_hop(port: PublishedPort, ports: PortsFacts, proxy_on: bool | None, runs: bool) -> Hop:
    if proxy_on is None:
        return Hop("proxy", UNKNOWN, "dockerd's userland-proxy setting is unknown")
    if not proxy_on:
        return Hop("proxy", NOT_JUDGED, "userland-proxy is off")
    if runs:
        return Hop("proxy", OK)
    if proxy_key(port) not in ports.earlier_suspects:
        return Hop("proxy", UNKNOWN, "no docker-proxy in one reading only")
    return Hop("proxy", BROKEN, "no docker-proxy process for it")


def _hairpin_hop(  # noqa: PLR0911 (one return per verdict)
    family: str, port: PublishedPort, address: str | None, view: _NatView | None
) -> Hop:
    """The per-port MASQUERADE a container reaching its own published port through the host's
    address needs in hairpin mode (userland-proxy off). A DNAT that skips the bridge's packets
    (`! -i <bridge>`) sends them to docker-proxy instead: then it is off the path."""
    name = "hairpin_masquerade"
    if view is None:
        return Hop(name, UNKNOWN, "the nat collector has no current reading")
    if not view.judged[family]:
        return Hop(name, UNKNOWN, "the nat rules could not be judged")
    if address is None:
        return Hop(name, UNKNOWN, "no container address on a bridge network")
    protocol, target = port.protocol, port.container_port
    mode = view.hairpin.dnats.get((family, protocol, port.host_port, address, target))
    if mode is False:
        return Hop(name, NOT_JUDGED, "off the path: the DNAT skips the bridge's packets")
    if (family, address, protocol, target) in view.hairpin.masquerades:
        return Hop(name, OK)
    rule = f"-s {address} -d {address} -p {protocol} --dport {target} -j MASQUERADE"
    if hairpin_key(family, address, protocol, target) not in view.nat.earlier_missing:
        return Hop(name, UNKNOWN, f"no {rule}, in one reading only")
    return Hop(name, BROKEN, f"no {rule}: the container cannot reach its own port")


_NO_DNAT = (
    "no DNAT: docker-proxy may serve it instead, through filter INPUT, which is not judged "
    "(clients then show as the proxy's address)"
)


def _routes(
    binding: str, proxy_on: bool | None, dnat: Hop, proxy_runs: bool
) -> tuple[frozenset[str], frozenset[str], str]:
    """The hops on the binding's paths (paths.PATHS), those on a path only under one
    userland-proxy setting when dockerd's is unknown, and why a hop is off the path when it is
    not the general reason. A binding Docker wrote no DNAT for takes docker-proxy's path; so
    does one whose DNAT is missing while its docker-proxy runs (userland-proxy on: its packets
    reach docker-proxy instead), through filter INPUT, which is not read: its dnat hop stays
    on the path, unknown (the caller makes it so)."""
    if dnat.state == NOT_JUDGED:
        return frozenset(paths.PROXIED), frozenset(), dnat.reason
    if (
        proxy_on is not False
        and dnat.state == BROKEN
        and proxy_runs
        and "dnat" in paths.on_path(binding, True)
    ):
        return frozenset((*paths.PROXIED, "dnat")), frozenset(), _NO_DNAT
    if proxy_on is None:
        on, off = paths.on_path(binding, True), paths.on_path(binding, False)
        return on | off, on ^ off, ""
    return paths.on_path(binding, proxy_on), frozenset(), ""


# Each hop off every path, made once (most ports have one or more).
_OFF = {name: Hop(name, NOT_JUDGED, paths.off_path_reason(name)) for name in HOPS}


def _placed(
    hop: Hop | None, name: str, on: frozenset[str], either: frozenset[str], why: str
) -> Hop:
    """A hop as its place on the paths has it: off every path not judged; on a path under one
    userland-proxy setting only, while dockerd's is unknown, never broken."""
    if hop is None or name not in on:
        if hop is not None and hop.state == NOT_JUDGED and hop.reason:
            return hop
        if why and name in ("dnat", "forward", "ip_forward"):
            return Hop(name, NOT_JUDGED, why)
        return _OFF[name]
    if hop.name in either and hop.state == BROKEN:
        return Hop(
            hop.name,
            UNKNOWN,
            f"{hop.reason}; on the path only under one userland-proxy setting, and dockerd's "
            "is unknown",
        )
    return hop


def port_verdicts(
    ports: PortsFacts,
    nat: NatFacts | None,
    fw: FirewallFacts | None,
    net: NetworkFacts | None,
) -> tuple[PortVerdict, ...]:
    """Every published port of every running container, each hop on its paths judged."""
    if not ports.containers:  # none publishes a port: the other facts' indexes are not made
        return ()
    listeners = {c.container_id: c for c in ports.listeners}
    proxy_on = ports.userland_proxy
    view = _NatView.of(nat, fw) if ports.containers else None
    links = _LinkView.of(net)
    served = proxied(ports.proxies)
    verdicts = []
    for container in sorted(ports.containers, key=lambda c: c.name):
        network = network_of(container, ports.networks)
        veth, bridge_port = _link_hops(container, network, links)
        addresses: dict[str, str | None] = {}  # by family, looked up once per container
        for port in container.ports:
            address_text = host_address(port)
            family = IPV6 if ":" in address_text else IPV4
            dnat = _dnat_hop(container, port, view)
            runs = has_proxy(served, port)
            proxy = _proxy_hop(port, ports, proxy_on, runs)
            if dnat.state == NOT_JUDGED and proxy_on is False:
                # docker-proxy's path alone, and no docker-proxy: nothing known serves it.
                proxy = Hop("proxy", UNKNOWN, f"userland-proxy is off and {dnat.reason}")
            binding = paths.scope(address_text)
            on, either, why = _routes(binding, proxy_on, dnat, runs)
            if why == _NO_DNAT:
                dnat = Hop("dnat", UNKNOWN, _NO_DNAT)
            unproven = paths.UNPROVEN.get((binding, proxy_on)) if proxy_on is not None else None
            if unproven and dnat.state == OK:
                dnat = Hop("dnat", UNKNOWN, unproven)
            forward = forwarding = hairpin = None
            if "forward" in on or "hairpin_masquerade" in on:
                if family not in addresses:
                    addresses[family] = _address_on(container, network, family)
                address = addresses[family]
                if "forward" in on:
                    forward = _forward_hop(family, port, address, network, view)
                if "hairpin_masquerade" in on:
                    hairpin = _hairpin_hop(family, port, address, view)
            if "ip_forward" in on:
                forwarding = _forwarding_hop(family, fw)
            judged = (
                dnat,
                forward,
                forwarding,
                veth,
                bridge_port,
                _listener_hop(container, port, listeners.get(container.id), ports),
                proxy,
                hairpin,
            )  # in HOPS order
            hops = tuple(
                [
                    hop
                    if hop is not None and name in on and name not in either
                    else _placed(hop, name, on, either, why)
                    for name, hop in zip(HOPS, judged, strict=True)
                ]
            )
            verdicts.append(PortVerdict(container.name, container.id, port, hops))
    return tuple(verdicts)
