"""The topology's model: what to draw (frozen dataclasses), built from a snapshot by the
collectors' own judges and joins, and the plain-text notes on collectors it is not fresh from.
Pure: nothing here reads the host."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from exporter.collectors.containers.facts import NAME as CONTAINERS
from exporter.collectors.containers.judge import Inventory, display_name
from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.nat.facts import NatFacts
from exporter.collectors.nat.judge import (
    ExpectedDnat,
    can_judge_nat,
    docker_firewall,
    has_dnat,
    has_masquerade,
    nat_destination,
    nat_verdicts,
)
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.network.judge import (
    NetnsOwner,
    VethView,
    bridge_views,
    netns_owners,
    veth_views,
)
from exporter.collectors.ports.facts import PortsFacts
from exporter.collectors.ports.judge import PortVerdict, port_verdicts
from exporter.collectors.processes.facts import ProcessFacts
from exporter.collectors.processes.judge import shared_with_host, shim_verdicts
from exporter.readers.docker_api import DockerNetwork, EngineFacts
from exporter.readers.netns import (
    OWNER_DOCKER_SANDBOX,
    OWNER_FOREIGN,
    OWNER_HOST,
    OWNER_NONE,
    OWNER_UNKNOWN,
)
from exporter.snapshot import CollectorState, Snapshot

# The collectors the picture is drawn from (their names, as registered).
NETWORK, PROCESSES, NAT, PORTS = "network", "processes", "nat", "ports"
FIREWALL = "firewall"
DRAWN_FROM = (CONTAINERS, PROCESSES, NETWORK, NAT, FIREWALL, PORTS)

# Namespaces whose sharing with the host is worth a second look (cgroup and user are shared
# by every container on a host without cgroup or user namespaces: not worth colouring).
_NOTABLE_SHARED = ("net", "pid", "ipc", "uts", "mnt")

# ---------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Box:
    """One node: its lines (the first is its title), and what is wrong with it, if anything."""

    lines: tuple[str, ...]
    kind: str  # container, iface, veth, bridge, network, exit, note
    broken: str | None = None  # why it is broken: drawn in red
    warn: str | None = None  # worth a look, not broken (a namespace shared with the host)
    dashed: bool = False  # not a thing of its own: a shared namespace, the host's network


@dataclass(frozen=True)
class Row:
    """One line of a band: a container (or whatever holds a veth), its interface, its veth;
    or, in the exits column, one rule."""

    cells: tuple[Box | None, ...]
    search: str  # what the search box matches (names, addresses, rules), lower case
    to_bus: bool = False  # its last cell joins the band's bus


@dataclass(frozen=True)
class Band:
    key: str
    title: str
    subtitle: str
    rows: tuple[Row, ...]
    hub: tuple[Box | None, ...] = ()  # the bridge and the network, at the band's top
    exits: tuple[Row, ...] = ()

    @property
    def broken(self) -> int:
        cells = [c for r in (*self.rows, *self.exits) for c in r.cells] + list(self.hub)
        return sum(1 for c in cells if c is not None and c.broken)


@dataclass(frozen=True)
class CollectorNote:
    name: str
    enabled: bool
    success: bool
    error: str | None
    last_success_time: float | None


@dataclass(frozen=True)
class Problem:
    band: str
    what: str
    reason: str


@dataclass(frozen=True)
class Topology:
    host: str
    taken_at: float | None  # the newest collector run drawn
    rendered_at: float
    collectors: tuple[CollectorNote, ...]
    bands: tuple[Band, ...]
    containers: int  # running containers drawn
    not_running: int  # containers listed but not running (not drawn)
    problems: tuple[Problem, ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# Snapshot -> model


def build(snapshot: Snapshot, host: str, now: float) -> Topology:
    """What to draw. A failed collector's last good facts are drawn, and the page says how
    old they are (build_page); a collector that never answered draws nothing."""
    engine = snapshot.last_good(CONTAINERS, EngineFacts)
    net = snapshot.last_good(NETWORK, NetworkFacts)
    procs = snapshot.last_good(PROCESSES, ProcessFacts)
    nat = snapshot.last_good(NAT, NatFacts)
    ports = snapshot.last_good(PORTS, PortsFacts)
    verdicts = (
        port_verdicts(ports, nat, snapshot.last_good(FIREWALL, FirewallFacts), net)
        if ports is not None
        else ()
    )
    bands = _Builder(engine, net, procs, nat, verdicts).bands()
    states = [snapshot.collectors.get(n) for n in DRAWN_FROM]
    notes = tuple(
        CollectorNote(name, s is not None, s is not None and s.success, _error(s), _last(s))
        for name, s in zip(DRAWN_FROM, states, strict=True)
    )
    times = [s.last_success_time for s in snapshot.collectors.values() if s.last_success_time]
    problems = tuple(
        Problem(band.title, _label(cell), cell.broken)
        for band in bands
        for cell in [c for r in (*band.rows, *band.exits) for c in r.cells] + list(band.hub)
        if cell is not None and cell.broken
    )
    running = [c for c in engine.containers if c.state == "running"] if engine else []
    return Topology(
        host=host,
        taken_at=max(times) if times else None,
        rendered_at=now,
        collectors=notes,
        bands=bands,
        containers=len(running),
        not_running=len(engine.containers) - len(running) if engine else 0,
        problems=problems,
    )


def _label(box: Box) -> str:
    """What a problem is about, for the list at the top of the page."""
    if box.kind == "exit":
        return " ".join(box.lines[:2])
    kind = {"veth": "veth", "container": "container", "bridge": "bridge"}.get(box.kind, "")
    if box.kind == "shim":
        kind = ""
    return f"{kind} {box.lines[0]}".strip()


def _error(state: CollectorState | None) -> str | None:
    return state.error if state is not None else None


def _last(state: CollectorState | None) -> float | None:
    return state.last_success_time if state is not None else None


def _in_subnets(address: str, subnets: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(s, strict=False) for s in subnets)
    except ValueError:
        return False


_OWNER_TEXT = {
    OWNER_DOCKER_SANDBOX: "Docker sandbox",
    OWNER_FOREIGN: "not Docker's",
    OWNER_UNKNOWN: "owner could not be read",
    OWNER_NONE: "nothing holds it",
    OWNER_HOST: "both ends on the host",
}
_ORPHAN_TEXT = {
    "peer_gone": "orphaned: peer gone",
    "no_container": "orphaned: no container",
    "stale_sandbox": "orphaned: stale sandbox",
}


class _Builder:
    def __init__(
        self,
        engine: EngineFacts | None,
        net: NetworkFacts | None,
        procs: ProcessFacts | None,
        nat: NatFacts | None,
        verdicts: tuple[PortVerdict, ...] = (),
    ) -> None:
        self.engine, self.net, self.procs, self.nat = engine, net, procs, nat
        # Each published port's verdict, by what its DNAT expectation names.
        self.ports: dict[tuple[str, str, str, int], list[PortVerdict]] = {}
        for v in verdicts:
            key = (v.container_id, v.family, v.port.protocol, v.port.host_port)
            self.ports.setdefault(key, []).append(v)
        self.inventory = Inventory(engine) if engine is not None else None
        self.names = self.inventory.names if self.inventory else {}
        self.records = {c.id: c for c in engine.containers} if engine else {}
        self.shims = {s.container_id: s for s in procs.shims} if procs else {}
        self.owners: tuple[NetnsOwner, ...] = (
            netns_owners(net, self.inventory) if net is not None else ()
        )
        self.in_netns = {m.container_id for o in self.owners for m in (o.owner, *o.sharers)}
        self.drawn: set[str] = set()  # containers given a box

    # -- boxes ------------------------------------------------------------------------------

    def container_box(self, container_id: str) -> Box:
        self.drawn.add(container_id)
        record = self.records.get(container_id)
        name = display_name(container_id, self.names)
        lines = [name, record.image if record else f"id {container_id[:12]}"]
        shim = self.shims.get(container_id)
        warn = broken = None
        if shim is not None:
            lines.append(f"PID 1: {shim.pid1 if shim.pid1 is not None else '?'} on the host")
            if self.procs is not None:
                shared = [
                    k for k, s in shared_with_host(shim.namespaces, self.procs.host_namespaces) if s
                ]
                if shared:
                    lines.append("shares with host: " + ",".join(shared))
                notable = [k for k in shared if k in _NOTABLE_SHARED]
                if notable:
                    warn = "shares the host's " + ", ".join(notable) + " namespace"
            if shim.unreadable_namespaces:
                broken = "namespaces could not be read: " + ",".join(shim.unreadable_namespaces)
        if (
            broken is None
            and self.net is not None
            and self.net.unreadable_netns
            and record is not None
            and record.state == "running"
            and record.network_mode not in ("host",)
            and container_id not in self.in_netns
        ):
            broken = "its network namespace could not be opened"
        return Box(tuple(lines), "container", broken=broken, warn=warn)

    def search_text(self, container_id: str) -> str:
        record = self.records.get(container_id)
        parts = [display_name(container_id, self.names), container_id[:12]]
        if record is not None:
            parts += [record.image, *record.addresses, *record.ipv6_addresses]
        return " ".join(parts)

    # -- bands ------------------------------------------------------------------------------

    def bands(self) -> tuple[Band, ...]:
        net, engine = self.net, self.engine
        running = [c for c in engine.containers if c.state == "running"] if engine else []
        veths = veth_views(net, self.inventory) if net is not None else ()
        placed: set[str] = set()
        rows_of: dict[str, list[tuple[str | None, Row]]] = {}
        for view in sorted(veths, key=lambda v: (v.container or "~", v.link.name)):
            key = view.bridge or ""
            rows_of.setdefault(key, []).append(
                (view.container_id, self.veth_row(view, on_bridge=view.bridge is not None))
            )
            if view.container_id:
                placed.add(view.container_id)
        by_mode: dict[str, list[str]] = {}
        for c in running:
            if c.id in placed or self._is_sharer(c.id):
                continue  # drawn with its veths, or onto the namespace it shares
            if c.network_mode.startswith("container:"):
                continue  # drawn with its owner (sharers_of), else with the leftovers
            mode = c.network_mode if c.network_mode in ("host", "none") else "other"
            by_mode.setdefault(mode, []).append(c.id)
        bands = self.bridge_bands(rows_of)
        for mode, title, note in (
            ("host", "host network", "the host's own network namespace: no veth"),
            ("none", "no network", "network none: only lo, no veth"),
        ):
            if by_mode.get(mode):
                bands.append(self.mode_band(mode, title, by_mode[mode], note))
        loose = rows_of.get("", [])
        if loose:
            bands.append(
                Band(
                    "no-bridge",
                    "veths on no bridge",
                    "host veths that are no bridge's port",
                    tuple(self.with_sharers(loose)),
                )
            )
        # Every running container is drawn: what no band took (another driver's network, a
        # namespace that could not be read, a sharer of a container not drawn) goes here.
        others = by_mode.get("other", [])
        others += [c.id for c in running if c.id not in self.drawn and c.id not in others]
        others = [c for c in others if c not in self.drawn]
        if others:
            bands.append(self.mode_band("other", "containers with no host veth", others, ""))
        shims = self.orphaned_shims()
        if shims:
            bands.append(Band("shims", "shims with no container", "containerd shims", tuple(shims)))
        return tuple(bands)

    def bridge_bands(self, rows_of: dict[str, list[tuple[str | None, Row]]]) -> list[Band]:
        """One band per bridge of the host (Docker's first, docker0 first of them), and one per
        Docker bridge network whose bridge is not among the host's links."""
        engine, net = self.engine, self.net
        bridges = bridge_views(net, self.inventory) if net is not None else ()
        networks = {n.bridge: n for n in engine.networks if n.bridge} if engine else {}
        bands: list[Band] = []
        ordered = sorted(
            bridges,
            key=lambda b: (
                b.network is None and b.link.name not in networks,
                b.link.name != "docker0",
                b.network.name if b.network else b.link.name,
            ),
        )
        for bridge in ordered:
            link = bridge.link
            network = bridge.network or networks.get(link.name)
            stp = {None: "?", True: "on", False: "off"}[link.stp_enabled]
            hub = (
                Box(
                    (
                        link.name,
                        f"STP {stp}",
                        f"{len(bridge.ports)} ports, {link.operstate or '?'}",
                    ),
                    "bridge",
                ),
                self.network_box(network),
            )
            subtitle = (
                f"bridge {link.name}"
                + (f", {', '.join(network.subnets)}" if network.subnets else "")
                + (f", driver {network.driver}" if network.driver != "bridge" else "")
                if network
                else f"bridge {link.name}: not a Docker network"
            )
            bands.append(
                Band(
                    f"bridge-{link.name}",
                    network.name if network else link.name,
                    subtitle,
                    tuple(self.with_sharers(rows_of.get(link.name, []))),
                    hub,
                    self.exits(network) if network else (),
                )
            )
        seen = {b.link.name for b in bridges}
        for name, network in sorted(networks.items()):
            if name in seen or net is None:
                continue
            missing = Box((name, "not among the host's links"), "bridge", dashed=True)
            bands.append(
                Band(
                    f"bridge-{name}",
                    network.name,
                    f"bridge {name}",
                    (),
                    (missing, self.network_box(network)),
                    self.exits(network),
                )
            )
        return bands

    def mode_band(self, mode: str, title: str, ids: list[str], note: str) -> Band:
        rows = []
        for cid in sorted(ids, key=lambda i: display_name(i, self.names)):
            record = self.records.get(cid)
            mode_text = record.network_mode if record else "?"
            text = note or f"network mode {mode_text}: no veth on this host"
            rows.append(
                (
                    cid,
                    Row(
                        (self.container_box(cid), Box((text,), "note", dashed=True)),
                        _s([self.search_text(cid)]),
                    ),
                )
            )
        return Band(f"mode-{mode}", title, f"{len(ids)} containers", tuple(self.with_sharers(rows)))

    def _is_sharer(self, container_id: str) -> bool:
        return any(container_id in {s.container_id for s in o.sharers} for o in self.owners)

    def with_sharers(self, rows: Sequence[tuple[str | None, Row]]) -> list[Row]:
        """Each owner's rows, then its sharers' (drawn onto its namespace)."""
        out: list[Row] = []
        done: set[str] = set()
        for index, (cid, row) in enumerate(rows):
            out.append(row)
            last_of_owner = index + 1 == len(rows) or rows[index + 1][0] != cid
            if cid is None or not last_of_owner or cid in done:
                continue
            done.add(cid)
            for sharer in self.sharers_of(cid):
                owner = display_name(cid, self.names)
                out.append(
                    Row(
                        (
                            self.container_box(sharer),
                            Box(
                                (f"shares {owner}'s", "network namespace", "(container:)"),
                                "iface",
                                dashed=True,
                            ),
                        ),
                        self.search_text(sharer) + " " + owner,
                    )
                )
        return out

    def sharers_of(self, container_id: str) -> list[str]:
        found = [
            s.container_id
            for o in self.owners
            if o.owner.container_id == container_id
            for s in o.sharers
        ]
        # A sharer whose namespace could not be read: by its network mode.
        found += [
            c.id
            for c in self.records.values()
            if c.state == "running"
            and c.network_mode == f"container:{container_id}"
            and c.id not in self.in_netns
        ]
        return sorted(dict.fromkeys(found), key=lambda i: display_name(i, self.names))

    def veth_row(self, view: VethView, on_bridge: bool) -> Row:
        link = view.link
        reason = _ORPHAN_TEXT.get(view.orphan_reason or "", view.orphan_reason)
        lines = [link.name, f"if{link.index}, {link.operstate or '?'}"]
        if view.bridge is not None:
            lines.append(f"port {link.port_state or '?'}")
        veth = Box(tuple(lines), "veth", broken=reason)
        search = [link.name]
        if view.container_id is not None:
            record = self.records.get(view.container_id)
            subnets = view.network.subnets if view.network else ()
            addresses = (
                [
                    a
                    for a in (*record.addresses, *record.ipv6_addresses)
                    if not subnets or _in_subnets(a, subnets)
                ]
                if record
                else []
            )
            iface = Box(
                (view.container_interface or "?", *addresses[:3]),
                "iface",
            )
            search += [self.search_text(view.container_id), view.container_interface or ""]
            return Row((self.container_box(view.container_id), iface, veth), _s(search), on_bridge)
        what = _OWNER_TEXT.get(view.owner_kind, view.owner_kind)
        holder = Box(
            ("(no container)", what, *([view.owner] if view.owner else [])), "note", dashed=True
        )
        peer = f"peer if{link.peer_index}" + (
            f" in nsid {link.peer_nsid}" if link.peer_nsid is not None else " on the host"
        )
        search += [view.owner, what]
        return Row((holder, Box((peer,), "iface", dashed=True), veth), _s(search), on_bridge)

    def network_box(self, network: DockerNetwork | None) -> Box:
        if network is None:
            return Box(("not a Docker network",), "network", dashed=True)
        lines = [network.name, f"driver {network.driver}"]
        lines += [f"subnet {s}" for s in network.subnets]
        lines += [f"gateway {g}" for g in network.gateways]
        if network.internal:
            lines.append("internal")
        return Box(tuple(lines), "network")

    def exits(self, network: DockerNetwork) -> tuple[Row, ...]:
        nat = self.nat
        if network.internal:
            return (Row((Box(("internal: no way out",), "exit", dashed=True),), "internal"),)
        if not network.ip_masquerade:
            return (Row((Box(("IP masquerade off",), "exit", dashed=True),), "masquerade off"),)
        if nat is None:
            return ()
        if not can_judge_nat(nat):
            why = (
                "Docker manages no firewall"
                if docker_firewall(nat.backends) == ("none",)
                else "a firewall backend or the Engine API could not be read"
            )
            return (Row((Box(("NAT not judged", why), "exit", dashed=True),), "nat"),)
        masquerades, dnats = nat_verdicts(nat)
        rows = []
        for m, missing in masquerades:
            if m.network != network.name:
                continue
            rule = f"-s {m.subnet} ! -o {m.bridge}"
            backend = next((r.backend for r in nat.rules if has_masquerade(m, [r])), None)
            lines = ["MASQUERADE" + (" (IPv6)" if m.family == "ipv6" else ""), rule]
            if backend:
                lines.append(f"in {backend}")
            rows.append(
                Row(
                    (
                        Box(
                            tuple(lines),
                            "exit",
                            broken="missing: traffic leaves unmasqueraded" if missing else None,
                        ),
                    ),
                    _s(["masquerade", m.subnet, m.bridge, network.name]),
                )
            )
        for d, missing in dnats:
            if not any(_in_subnets(a, network.subnets) for a in d.addresses):
                continue
            to = next(
                (nat_destination(r) for r in nat.rules if has_dnat(d, [r])),
                f"{d.addresses[0]}:{d.container_port}" if d.addresses else "?",
            )
            port_lines, port_broken = self.port_verdict(d.container_id, d.family, d)
            rows.append(
                Row(
                    (
                        Box(
                            (
                                f"DNAT {d.protocol} :{d.host_port} -> {to}",
                                f"published by {d.container}",
                                *port_lines,
                            ),
                            "exit",
                            broken="missing: the published port does not reach it"
                            if missing
                            else port_broken,
                        ),
                    ),
                    _s(["dnat", str(d.host_port), d.container, *d.addresses]),
                )
            )
        return tuple(rows)

    def port_verdict(
        self, container_id: str, family: str, d: ExpectedDnat
    ) -> tuple[tuple[str, ...], str | None]:
        """The port's verdict as a line of its DNAT box, and why it is broken, if it is."""
        found = self.ports.get((container_id, family, d.protocol, d.host_port), [])
        if not found:
            return (), None
        worst = next((v for v in found if v.verdict == "broken"), None) or next(
            (v for v in found if v.verdict == "unknown"), found[0]
        )
        first = worst.first
        if first is None:
            return ("port: ok",), None
        why = f"{first.name}: {first.reason}" if first.reason else first.name
        if worst.verdict == "broken":
            return (f"port: broken at {first.name}",), f"port broken at {why}"
        if worst.verdict == "restricted":
            cut = ", ".join(c.sources for c in first.cuts)
            return (f"port: restricted ({cut})",), None
        return (f"port: unknown ({first.name})",), None

    def orphaned_shims(self) -> list[Row]:
        if self.procs is None:
            return []
        rows = []
        for verdict in shim_verdicts(self.procs, self.inventory):
            if not verdict.orphaned:
                continue
            shim = verdict.shim
            box = Box(
                (
                    f"shim {shim.shim_pid}",
                    f"container id {shim.container_id[:12]}",
                    f"PID 1: {shim.pid1 if shim.pid1 is not None else '?'}",
                ),
                "shim",
                broken="orphaned: Docker lists no such container",
            )
            rows.append(Row((box,), _s([str(shim.shim_pid), shim.container_id])))
        return rows


def _s(parts: Iterable[str]) -> str:
    return " ".join(p for p in parts if p).lower()


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp))


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def collector_warnings(topology: Topology) -> list[str]:
    """Plain-text lines, one per collector the picture is not fresh from."""
    out = []
    for note in topology.collectors:
        if not note.enabled:
            out.append(f"collector {note.name} is disabled: what it reads is not drawn")
        elif not note.success:
            age = (
                f"drawn from its last good data, {when(note.last_success_time)} "
                f"({_age(topology.rendered_at - note.last_success_time)} old)"
                if note.last_success_time is not None
                else "it has never answered: nothing of it is drawn"
            )
            out.append(f"collector {note.name} failed: {note.error or 'unknown error'}; {age}")
    return out
