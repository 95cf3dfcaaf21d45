"""The host's plumbing as a picture: /topology and `inspect --format svg`.

Snapshot -> Topology (frozen dataclasses: what to draw, joined by the collectors' own judges)
-> SVG. One band per bridge, left to right: containers -> their interfaces -> host veths ->
the bridge -> the Docker network -> its way off the host (MASQUERADE per subnet, DNAT per
published port); then the containers with no veth (host, none, other drivers), veths on no
bridge, and shims with no container. What is broken is red, with its reason in the box and
on hover.

Pure: nothing here reads the host. Every string from the Engine API or the kernel (names,
images, paths) is untrusted: it is cleaned of characters XML cannot hold and escaped where it
is written, never trusted as markup. The page is rendered once per snapshot (TopologyPage)
and served as bytes, with a Content-Security-Policy that allows only its own inline style and
script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import ipaddress
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from exporter import __version__
from exporter.collectors.containers.judge import CONTAINERS, Inventory, display_name
from exporter.collectors.daemon.facts import DaemonConfigFacts
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
from exporter.metrics import Exposition
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
NETWORK, PROCESSES, NAT, PORTS, DAEMON = "network", "processes", "nat", "ports", "daemon"
FIREWALL = "firewall"
DRAWN_FROM = (CONTAINERS, PROCESSES, NETWORK, NAT, FIREWALL, PORTS)

# Namespaces whose sharing with the host is worth a second look (cgroup and user are shared
# by every container on a host without cgroup or user namespaces: not worth colouring).
_NOTABLE_SHARED = ("net", "pid", "ipc", "uts", "mnt")

# Columns: container, its interface, host veth, bridge, network, way out.
_COL_X = (8, 246, 424, 628, 816, 1052)
_COL_W = (220, 160, 172, 170, 200, 310)
_BUS_X = (612, 1034)  # the bridge's bus (veths -> bridge), the network's (-> exits)
_WIDTH = _COL_X[5] + _COL_W[5] + 8
_LINE = 14  # px per text line
_PAD = 6
_GAP = 8  # between rows
_MID = _PAD + 9  # where connectors meet a box: the middle of its first line
_CHAR_PX = 6.3  # an 11px sans-serif character, wide enough for most


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
        port_verdicts(
            ports,
            nat,
            snapshot.last_good(FIREWALL, FirewallFacts),
            net,
            snapshot.last_good(DAEMON, DaemonConfigFacts),
        )
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


# ---------------------------------------------------------------------------------------------
# Text that is safe in XML and HTML


# Characters XML 1.0 cannot hold even as references, and the bidirectional controls that could
# make a name read as another.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)


def clean(text: str) -> str:
    """Untrusted text as something a person can read: line breaks shown as ⏎, other control
    characters (and lone surrogates) as �."""
    return _UNSAFE.sub(
        "\ufffd", text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", " ")
    )


def esc(text: str) -> str:
    """For text and attribute values alike (quotes escaped too)."""
    return html.escape(clean(text), quote=True)


def _fit(text: str, width: float) -> str:
    chars = max(4, int((width - 2 * _PAD) / _CHAR_PX))
    text = clean(text)
    return text if len(text) <= chars else text[: chars - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Model -> SVG


def _box_height(box: Box) -> int:
    extra = 1 if box.broken else 0
    return (len(box.lines) + extra) * _LINE + 2 * _PAD


def _row_height(row: Row) -> int:
    return max((_box_height(c) for c in row.cells if c is not None), default=_LINE) + _GAP


def _box_svg(box: Box, column: int, y: int) -> str:
    x, w = _COL_X[column], _COL_W[column]
    h = _box_height(box)
    classes = ["box", box.kind]
    if box.broken:
        classes.append("broken")
    elif box.warn:
        classes.append("warn")
    if box.dashed:
        classes.append("dashed")
    tip = "\n".join(clean(line) for line in box.lines)
    if box.broken:
        tip += "\nBROKEN: " + clean(box.broken)
    elif box.warn:
        tip += "\nNOTE: " + clean(box.warn)
    parts = [
        f'<g class="{" ".join(classes)}"><title>{html.escape(tip, quote=True)}</title>',
        f'<rect x="{x}" y="{y}" width="{w}" height="{h - 1}" rx="4"/>',
    ]
    for i, line in enumerate(box.lines):
        cls = "t" if i == 0 else "d"
        parts.append(
            f'<text class="{cls}" x="{x + _PAD}" y="{y + _PAD + 10 + i * _LINE}">'
            f"{html.escape(_fit(line, w), quote=True)}</text>"
        )
    if box.broken:
        parts.append(
            f'<text class="why" x="{x + _PAD}" y="{y + _PAD + 10 + len(box.lines) * _LINE}">'
            f"{html.escape(_fit('✗ ' + box.broken, w), quote=True)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _link(x1: int, x2: int, y: int, cls: str = "edge") -> str:
    return f'<line class="{cls}" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>'


def _row_svg(row: Row, y: int, first_column: int) -> str:
    joins = ' data-b="1"' if row.to_bus or first_column == 5 else ""
    parts = [
        f'<g class="row" data-h="{_row_height(row)}" data-s="{esc(row.search)}"{joins} '
        f'transform="translate(0,{y})">'
    ]
    cells = [(first_column + i, c) for i, c in enumerate(row.cells) if c is not None]
    for (col, _), (next_col, nxt) in itertools.pairwise(cells):
        parts.append(
            _link(
                _COL_X[col] + _COL_W[col],
                _COL_X[next_col],
                _MID,
                "edge dashed" if nxt.dashed else "edge",
            )
        )
    for col, cell in cells:
        parts.append(_box_svg(cell, col, 0))
    if row.to_bus and cells:
        col, cell = cells[-1]
        parts.append(
            _link(
                _COL_X[col] + _COL_W[col], _BUS_X[0], _MID, "edge broken" if cell.broken else "edge"
            )
        )
    if first_column == 5:
        parts.append(_link(_BUS_X[1], _COL_X[5], _MID))
    parts.append("</g>")
    return "".join(parts)


def band_svg(band: Band) -> tuple[str, int]:
    """One band as an <svg> element, and its height. Rows are stacked by translate(0, y) and
    carry their height (data-h), so the page's search can hide rows and stack the rest again."""
    body: list[str] = []
    y = 0
    last_mid = None
    for row in band.rows:
        body.append(_row_svg(row, y, 0))
        if row.to_bus:
            last_mid = y + _MID
        y += _row_height(row)
    rows_h = y
    hub_h = 0
    if band.hub:
        bridge, network = (*band.hub, None, None)[:2]
        if bridge is not None:
            hub_h = max(hub_h, _box_height(bridge))
        if network is not None:
            hub_h = max(hub_h, _box_height(network))
    y = 0
    exits = []
    for row in band.exits:
        exits.append(_row_svg(row, y, 5))
        y += _row_height(row)
    exits_h = y
    height = max(rows_h, hub_h + _GAP, exits_h, _LINE + _GAP)
    hub: list[str] = []
    if band.hub:
        bridge, network = (*band.hub, None, None)[:2]
        if last_mid is not None:
            hub.append(
                f'<line class="bus" data-bus="rows" x1="{_BUS_X[0]}" y1="{_MID}" '
                f'x2="{_BUS_X[0]}" y2="{last_mid}"/>'
            )
            hub.append(
                _link(_BUS_X[0], _COL_X[3], _MID).replace("<line ", '<line data-stub="rows" ')
            )
        if bridge is not None:
            hub.append(_box_svg(bridge, 3, 0))
        if network is not None:
            hub.append(_link(_COL_X[3] + _COL_W[3], _COL_X[4], _MID))
            hub.append(_box_svg(network, 4, 0))
        if band.exits:
            exits_last = exits_h - _row_height(band.exits[-1]) + _MID
            hub.append(
                f'<line class="bus" data-bus="exits" x1="{_BUS_X[1]}" y1="{_MID}" '
                f'x2="{_BUS_X[1]}" y2="{exits_last}"/>'
            )
            stub = _link(_COL_X[4] + _COL_W[4], _BUS_X[1], _MID)
            hub.append(stub.replace("<line ", '<line data-stub="exits" '))
    svg = (
        f'<svg class="band" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_WIDTH} {height}" data-hub="{hub_h + _GAP}">'
        + "".join(hub)
        + f'<g class="rows">{"".join(body)}</g>'
        + f'<g class="exits">{"".join(exits)}</g>'
        + "</svg>"
    )
    return svg, height


_COLUMN_TITLES = ("containers", "interfaces", "host veths", "bridges", "Docker networks", "way out")

# One stylesheet for the page and the standalone SVG: classes only, no style attributes (the
# page's Content-Security-Policy allows this one stylesheet by its hash, and nothing else).
STYLE = """
svg text{font:11px sans-serif;fill:#1d2733}
svg text.t{font-weight:bold}
svg text.why{fill:#b00020;font-weight:bold}
svg .box rect{fill:#f4f7fb;stroke:#7d8fa3;stroke-width:1}
svg .container rect{fill:#e8f0fe}
svg .iface rect{fill:#eef7ee}
svg .veth rect{fill:#fdf6e3}
svg .bridge rect{fill:#efe8fb}
svg .network rect{fill:#e6f4f6}
svg .exit rect{fill:#f1f1f1}
svg .note rect{fill:#fafafa}
svg .dashed rect{stroke-dasharray:4 3}
svg .warn rect{stroke:#b26a00;stroke-width:2;fill:#fff4e0}
svg .broken rect{stroke:#b00020;stroke-width:2;fill:#fde8ea}
svg line.edge{stroke:#7d8fa3;stroke-width:1.2}
svg line.edge.dashed{stroke-dasharray:4 3}
svg line.edge.broken{stroke:#b00020;stroke-dasharray:5 3}
svg line.bus{stroke:#5a6b7d;stroke-width:2}
svg text.band-title{font-size:14px;font-weight:bold}
svg text.column{fill:#5a6b7d;font-size:11px;font-style:italic}
"""

_PAGE_STYLE = (
    STYLE
    + """
body{font:14px sans-serif;margin:16px;color:#1d2733}
header p{margin:4px 0}
.failed{background:#fde8ea;border:2px solid #b00020;padding:6px 10px;margin:6px 0}
.problems li{color:#b00020}
details{border-top:1px solid #c9d3de;padding:6px 0}
details>summary{cursor:pointer;font-weight:bold}
summary .sub{font-weight:normal;color:#5a6b7d}
summary .bad{color:#b00020}
.scroll{overflow-x:auto}
#search{font-size:14px;padding:3px 6px;width:22em}
[hidden]{display:none !important}
"""
)

# Search: hide the rows that do not match and stack the rest again; open the bands that match.
_SCRIPT = """
(function(){
var q=document.getElementById('search'),bands=document.querySelectorAll('details.band');
function has(text,terms){for(var i=0;i<terms.length;i++){if(text.indexOf(terms[i])>=0)return true;}
 return false;}
function stack(svg,sel,terms){var g=svg.querySelector(sel),y=0,last=null,n=0;
 if(!g)return [0,null,0];
 for(var r=g.firstChild;r;r=r.nextSibling){
  var ok=!terms.length||has(r.getAttribute('data-s'),terms);
  if(ok){r.removeAttribute('display');r.setAttribute('transform','translate(0,'+y+')');
   if(r.hasAttribute('data-b'))last=y;
   y+=+r.getAttribute('data-h');n++;}else{r.setAttribute('display','none');}}
 return [y,last,n];}
function bus(svg,name,last){var b=svg.querySelector('line[data-bus="'+name+'"]'),
 s=svg.querySelector('line[data-stub="'+name+'"]');if(!b)return;
 if(last===null){b.setAttribute('display','none');if(s)s.setAttribute('display','none');}
 else{b.removeAttribute('display');if(s)s.removeAttribute('display');b.setAttribute('y2',last+15);}}
function run(){var terms=q.value.toLowerCase().split(/\\s+/).filter(Boolean);
 for(var i=0;i<bands.length;i++){var d=bands[i],svg=d.querySelector('svg.band');
  var whole=terms.length&&has(d.querySelector('summary').textContent.toLowerCase(),terms);
  var key=whole?[]:terms,a=stack(svg,'g.rows',key),b=stack(svg,'g.exits',key);
  bus(svg,'rows',a[1]);bus(svg,'exits',b[1]);
  var h=Math.max(a[0],b[0],+svg.getAttribute('data-hub'),22);svg.setAttribute('height',h);
  svg.setAttribute('viewBox','0 0 '+svg.getAttribute('width')+' '+h);
  var hit=!terms.length||whole||a[2]+b[2]>0;d.hidden=!hit;if(terms.length&&hit)d.open=true;}}
q.addEventListener('input',run);
document.getElementById('open').addEventListener('click',function(){
 for(var i=0;i<bands.length;i++)bands[i].open=true;});
document.getElementById('close').addEventListener('click',function(){
 for(var i=0;i<bands.length;i++)bands[i].open=false;});
var h=decodeURIComponent(location.hash.slice(1));if(h.indexOf('q=')===0){q.value=h.slice(2);run();}
})();
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only the page's own stylesheet and script, by hash: no other script, style, font, image or
# connection, so a name that slipped through as markup would still run nothing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src {_sha256(_PAGE_STYLE)}; "
    f"script-src {_sha256(_SCRIPT)}; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _when(timestamp: float | None) -> str:
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
                f"drawn from its last good data, {_when(note.last_success_time)} "
                f"({_age(topology.rendered_at - note.last_success_time)} old)"
                if note.last_success_time is not None
                else "it has never answered: nothing of it is drawn"
            )
            out.append(f"collector {note.name} failed: {note.error or 'unknown error'}; {age}")
    return out


def _open_by_default(topology: Topology, band: Band) -> bool:
    if topology.containers <= 60:
        return True
    return band.broken > 0 or len(band.rows) <= 30


def render_page(topology: Topology, telemetry_path: str = "/metrics") -> bytes:
    """The /topology page: a small HTML page around one server-side SVG per band."""
    warnings = "".join(f'<p class="failed">{esc(w)}</p>' for w in collector_warnings(topology))
    problems = "".join(
        f"<li>{esc(p.band)}: <b>{esc(p.what)}</b>: {esc(p.reason)}</li>"
        for p in topology.problems[:200]
    )
    if len(topology.problems) > 200:
        problems += f"<li>… and {len(topology.problems) - 200} more</li>"
    head = (
        f'<svg class="columns" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="18">'
        + "".join(
            f'<text class="column" x="{_COL_X[c]}" y="13">{t}</text>'
            for c, t in enumerate(_COLUMN_TITLES)
        )
        + "</svg>"
    )
    bands = []
    for i, band in enumerate(topology.bands):
        svg, _ = band_svg(band)
        bad = f' <span class="bad">{band.broken} broken</span>' if band.broken else ""
        rows = sum(1 for r in band.rows)
        is_open = " open" if _open_by_default(topology, band) else ""
        bands.append(
            f'<details class="band" id="band-{i}"{is_open}>'
            f'<summary>{esc(band.title)} <span class="sub">{esc(band.subtitle)}; '
            f"{rows} rows</span>{bad}</summary>"
            f'<div class="scroll">{svg}</div></details>'
        )
    path = esc(telemetry_path)
    stopped = f", {topology.not_running} not running (not drawn)" if topology.not_running else ""
    broken = f"<h2>Broken ({len(topology.problems)})</h2>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Topology of {esc(topology.host)}: Docker Host Exporter</title>
<link rel="icon" href="data:,">
<style>{_PAGE_STYLE}</style></head>
<body>
<header>
<h1>Topology of {esc(topology.host)}</h1>
<p>Snapshot of {esc(_when(topology.taken_at))} (page rendered {esc(_when(topology.rendered_at))}),
{topology.containers} running containers{stopped}.
Drawn from the exporter's latest sample: this page never reads the host.
<a href="{path}">Metrics</a> · <a href="/">Home</a></p>
{warnings}
<p>Left to right: containers (image, host PID of PID 1, namespaces shared with the host) →
their interfaces → host veths (bridge port state) → bridges → Docker networks → the way off
the host (MASQUERADE per subnet, DNAT per published port). <b class="why">Red</b>: broken,
with the reason (hover for the full text); amber: shares a namespace with the host; dashed:
a shared namespace, or no veth.</p>
<p><input id="search" type="search" aria-label="search"
 placeholder="search: names, veths, addresses, ports (any of several words)">
<button id="open" type="button">expand all</button>
<button id="close" type="button">collapse all</button></p>
</header>
<section>{broken}<ul class="problems">{problems or "<li>nothing</li>"}</ul></section>
<div class="scroll">{head}</div>
{"".join(bands) or "<p>Nothing sampled yet.</p>"}
<footer><p>docker-host-exporter {esc(__version__)}</p></footer>
<script>{_SCRIPT}</script>
</body></html>
"""
    return page.encode()


def render_svg(topology: Topology) -> str:
    """The same picture as one standalone SVG document (`inspect --format svg`)."""
    parts: list[str] = []
    y = 8
    header = [f"Topology of {topology.host} at {_when(topology.taken_at)}"]
    header += collector_warnings(topology)
    for line in header:
        cls = "band-title" if line is header[0] else "why"
        parts.append(f'<text class="{cls}" x="8" y="{y + 14}">{esc(line)}</text>')
        y += 20
    for col, title in enumerate(_COLUMN_TITLES):
        parts.append(f'<text class="column" x="{_COL_X[col]}" y="{y + 12}">{title}</text>')
    y += 20
    for band in topology.bands:
        bad = f" ({band.broken} broken)" if band.broken else ""
        parts.append(
            f'<text class="band-title" x="8" y="{y + 16}">'
            f"{esc(band.title)}: {esc(band.subtitle)}{esc(bad)}</text>"
        )
        y += 24
        svg, height = band_svg(band)
        parts.append(svg.replace("<svg ", f'<svg x="0" y="{y}" ', 1))
        y += height + 12
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{y}" '
        f'viewBox="0 0 {_WIDTH} {y}"><style>{STYLE}</style>'
        f'<rect width="{_WIDTH}" height="{y}" fill="#ffffff"/>' + "".join(parts) + "</svg>\n"
    )


# ---------------------------------------------------------------------------------------------
# Served once per snapshot


class TopologyPage:
    """The page of the latest snapshot. Rendered by the first request after a snapshot is
    published (under a lock: concurrent requests wait for that one rendering), then every
    request serves the same bytes until the next snapshot: a page view costs what a scrape
    costs, and never reads the host."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        host: str,
        telemetry_path: str = "/metrics",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._snapshot = snapshot
        self._host = host
        self._telemetry_path = telemetry_path
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[Snapshot, Exposition] | None = None

    def current(self) -> Exposition:
        snapshot = self._snapshot()
        cached = self._cached
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] is snapshot:
                return cached[1]
            page = Exposition(
                render_page(build(snapshot, self._host, self._clock()), self._telemetry_path)
            )
            self._cached = (snapshot, page)
            return page


def topology_svg(snapshot: Snapshot, host: str, now: float | None = None) -> str:
    return render_svg(build(snapshot, host, time.time() if now is None else now))


__all__: Sequence[str] = (
    "CONTENT_SECURITY_POLICY",
    "Topology",
    "TopologyPage",
    "build",
    "render_page",
    "render_svg",
    "topology_svg",
)
