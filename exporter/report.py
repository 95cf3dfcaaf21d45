"""`inspect`: one sample as tables for a person at a shell, or as JSON facts for a recording."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence

from exporter import factcodec
from exporter.collectors import CollectorDef
from exporter.collectors.containers import NAME as CONTAINERS
from exporter.collectors.containers import inventory
from exporter.collectors.daemon import NAME as DAEMON
from exporter.collectors.layers import NAME as LAYERS
from exporter.collectors.nat import NAME as NAT
from exporter.collectors.network import NAME as NETWORK
from exporter.collectors.processes import NAME as PROCESSES
from exporter.facts import (
    NAMESPACE_KINDS,
    DaemonConfigFacts,
    EngineFacts,
    LayersFacts,
    NamespaceLink,
    NatFacts,
    NatRule,
    NetworkFacts,
    ProcessFacts,
)
from exporter.plumbing import (
    VETH_DOCKER_SANDBOX,
    VETH_FOREIGN,
    VETH_UNKNOWN,
    VethView,
    bridge_views,
    config_file_valid,
    config_verdicts,
    container_processes,
    docker_firewall,
    judged_families,
    layer_views,
    nat_destination,
    nat_verdicts,
    netns_sharers,
    rules_split_across_backends,
    sharing_totals,
    shim_verdicts,
    veth_views,
)
from exporter.snapshot import CollectorState, Snapshot


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if len(cells) == 1:
        lines.append("(none)")
    return f"{title}\n" + "\n".join(lines) + "\n"


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def render_report(snapshot: Snapshot) -> str:
    sections = [
        table(
            "COLLECTORS",
            ("COLLECTOR", "OK", "DURATION", "ERROR"),
            (
                (
                    s.name,
                    "yes" if s.success else "NO",
                    f"{s.duration_seconds * 1000:.1f}ms",
                    s.error or "",
                )
                for s in snapshot.collectors.values()
            ),
        )
    ]
    engine = snapshot.current(CONTAINERS, EngineFacts)
    procs = snapshot.current(PROCESSES, ProcessFacts)
    if engine is not None:
        sections.append(
            table(
                "CONTAINERS",
                ("CONTAINER", "ID", "STATE", "IMAGE", "NETWORK MODE", "CREATED"),
                (
                    (c.name, c.short_id, c.state, c.image, c.network_mode, _when(c.created))
                    for c in engine.containers
                ),
            )
        )
    if procs is not None:
        known = inventory(snapshot)
        views = sorted(container_processes(procs, known), key=lambda v: v.container)
        sections.append(
            table(
                "CONTAINER PROCESSES",
                ("CONTAINER", "HOST PID", "SHIM PID", "PROCESSES", "ZOMBIES", "SHARED WITH HOST"),
                (
                    (
                        v.container,
                        v.shim.pid1,
                        v.shim.shim_pid,
                        v.shim.processes,
                        v.shim.zombies,
                        ",".join(k for k, shared in v.shared_with_host if shared) or "-",
                    )
                    for v in views
                ),
            )
        )
        sections.append(
            table(
                "NAMESPACES (inode; * = the host's own)",
                ("CONTAINER", *NAMESPACE_KINDS),
                (
                    (
                        v.container,
                        *(
                            _namespace_cell(
                                v.shim.namespaces,
                                dict(v.shared_with_host),
                                kind,
                                v.shim.unreadable_namespaces,
                            )
                            for kind in NAMESPACE_KINDS
                        ),
                    )
                    for v in views
                ),
            )
        )
        sections.append(
            table(
                "SHIMS",
                ("SHIM PID", "CONTAINER ID", "CONTAINER", "ORPHANED", "STARTED"),
                (
                    (
                        v.shim.shim_pid,
                        v.shim.container_id[:12],
                        v.container,
                        {None: "unknown", True: "YES", False: "no"}[v.orphaned],
                        _when(v.shim.shim_start_time),
                    )
                    for v in sorted(shim_verdicts(procs, known), key=lambda v: v.container)
                ),
            )
        )
        versions = {c.name: c.version for c in engine.components} if engine else {}
        sections.append(
            table(
                "DAEMONS",
                ("PROCESS", "PID", "STARTED", "VERSION"),
                (
                    (
                        d.name,
                        d.pid,
                        _when(d.start_time),
                        versions.get("Engine" if d.name == "dockerd" else d.name, "-"),
                    )
                    for d in procs.daemons
                ),
            )
        )
    net = snapshot.current(NETWORK, NetworkFacts)
    if net is not None:
        sections.extend(network_sections(net, snapshot))
    nat = snapshot.current(NAT, NatFacts)
    if nat is not None:
        sections.extend(nat_sections(nat))
    daemon = snapshot.current(DAEMON, DaemonConfigFacts)
    if daemon is not None:
        sections.append(daemon_section(daemon))
    layers = snapshot.current(LAYERS, LayersFacts)
    if layers is not None:
        sections.extend(layer_sections(layers))
    return "\n".join(sections)


def _bytes(n: int) -> str:
    """Decimal units, as `docker system df` prints them."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"


def layer_sections(facts: LayersFacts, top: int = 20) -> list[str]:
    """The layer -> images matrix (which images share which layers) and the biggest read/write
    layers, as `docker system df -v` would not show them."""
    images = sorted(facts.images, key=lambda i: (i.tags or ("~",))[0])
    names = [(i.tags[0] if i.tags and i.tags[0] != "<none>:<none>" else i.id[7:19]) for i in images]
    columns = [f"[{n}] " for n in range(1, len(images) + 1)]
    legend = "".join(
        f"  [{n}] {name}: {_bytes(i.size)}, shared {_bytes(max(i.shared_size, 0))}, "
        f"unique {_bytes(i.unique_size)}, {i.containers} containers\n"
        for n, (name, i) in enumerate(zip(names, images, strict=True), start=1)
    )
    totals = sharing_totals(facts)
    rows = [
        (
            v.layer.chain_id[7:19],
            _bytes(v.layer.size),
            *("x" if image.id in v.images else "." for image in images),
            _bytes(v.saved_bytes),
        )
        for v in layer_views(facts)
    ]
    matrix = (
        table(
            f"IMAGE LAYERS ({len(facts.layers)} layers; {_bytes(totals.on_disk)} on disk, "
            f"{_bytes(totals.without_sharing)} without sharing, {_bytes(totals.saved)} saved)",
            ("LAYER", "SIZE", *columns, "SAVED"),
            rows,
        )
        + legend
    )
    writers = sorted(facts.containers, key=lambda c: -c.size_rw)[:top]
    rw = table(
        "LARGEST READ/WRITE LAYERS",
        ("CONTAINER", "RW LAYER", "VIRTUAL SIZE", "IMAGE"),
        ((c.name, _bytes(c.size_rw), _bytes(c.size_root_fs), c.image_id[7:19]) for c in writers),
    )
    return [matrix, rw]


_VERDICT_TEXT = {
    "in_sync": "in sync",
    "reload": "reload needed (SIGHUP)",
    "restart": "restart needed",
    "conflict": "CONFLICT: also a flag, dockerd will not start",
    "unknown_key": "UNKNOWN KEY: dockerd will not start",
    "not_comparable": "not comparable",
}


def daemon_section(daemon: DaemonConfigFacts) -> str:
    if daemon.pid is None:
        return f"DAEMON CONFIGURATION\n(no dockerd: {daemon.docker_error})\n"
    state = "missing" if not daemon.file_present else "present"
    header = (
        f"DAEMON CONFIGURATION ({daemon.config_path}: {state}"
        f"{', ' + daemon.file_error if daemon.file_error else ''}; "
        f"valid: {'yes' if config_file_valid(daemon) else 'NO'}; started {_when(daemon.start_time)}"
        f"; last reload {_when(daemon.reloads[-1][0]) if daemon.reloads else 'none'})"
    )
    rows = [
        (v.key, _short(v.file_value), _short(v.running_value or "-"), _VERDICT_TEXT[v.verdict])
        for v in config_verdicts(daemon)
    ]
    text = table(header, ("KEY", "FILE", "RUNNING", "VERDICT"), rows)
    if daemon.flag_keys:
        text += (
            f"command-line flags (a SIGHUP never changes these): {', '.join(daemon.flag_keys)}\n"
        )
    if daemon.unit_path:
        text += f"systemd unit {daemon.unit_path}: ExecStart={daemon.unit_exec_start}"
        text += f" EnvironmentFile={daemon.unit_environment_file or '-'}\n"
    return text


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def nat_sections(nat: NatFacts) -> list[str]:
    backends = ", ".join(
        f"{b.name}: {b.nat_rules} nat rules, {b.nat_rules_ipv6} IPv6"
        if b.readable
        else f"{b.name}: UNREADABLE ({b.error})"
        for b in nat.backends
    )
    header = f"NAT (Docker's firewall: {', '.join(docker_firewall(nat.backends))}; {backends})" + (
        "\nWARNING: nat rules are split across both backends"
        if rules_split_across_backends(nat.backends)
        else ""
    )
    rules = table(
        header,
        ("BACKEND", "CHAIN", "RULE", "PACKETS", "BYTES"),
        (
            (
                r.backend + (" (ipv6)" if r.family == "ipv6" else ""),
                f"{r.table}/{r.chain}",
                iptables_text(r),
                r.packets,
                r.bytes,
            )
            for r in nat.rules
        ),
    )
    masquerades, dnats = nat_verdicts(nat)
    tool = {"ipv4": "iptables", "ipv6": "ip6tables"}
    missing = [
        f"{tool[m.family]} -s {m.subnet} ! -o {m.bridge} -j MASQUERADE  (network {m.network})"
        for m, gone in masquerades
        if gone
    ]
    missing += [
        f"{tool[d.family]} -p {d.protocol} --dport {d.host_port} -j DNAT --to-destination "
        + (
            f"[{'|'.join(d.addresses)}]:{d.container_port}"
            if d.family == "ipv6"
            else f"{'|'.join(d.addresses)}:{d.container_port}"
        )
        + f"  (container {d.container})"
        for d, gone in dnats
        if gone
    ]
    judged = bool(masquerades or dnats) or nat.expectations is not None
    if judged and not judged_families(nat)["ipv6"]:
        missing.append("(IPv6 not judged: Docker manages no IPv6 NAT here)")
    verdict = (
        "MISSING NAT RULES\n"
        + "\n".join(missing or ["(none)" if judged else "(not judged)"])
        + "\n"
    )
    return [rules, verdict]


def iptables_text(rule: NatRule) -> str:
    """A decoded rule, as `iptables -t nat -S` would print it."""
    parts = []
    if rule.source:
        parts.append(f"-s {rule.source}")
    if rule.destination:
        parts.append(f"-d {rule.destination}")
    if rule.in_interface:
        parts.append(f"{'! ' if rule.in_negated else ''}-i {rule.in_interface}")
    if rule.out_interface:
        parts.append(f"{'! ' if rule.out_negated else ''}-o {rule.out_interface}")
    if rule.protocol:
        parts.append(f"-p {rule.protocol}")
    if rule.dport:
        parts.append(f"--dport {rule.dport}")
    if rule.action == "masquerade":
        parts.append("-j MASQUERADE")
    else:
        parts.append(f"-j DNAT --to-destination {nat_destination(rule)}")
    return " ".join(parts)


def network_sections(net: NetworkFacts, snapshot: Snapshot) -> list[str]:
    known = inventory(snapshot)
    veths = veth_views(net, known)
    paired = sorted(
        (v for v in veths if v.container), key=lambda v: (v.container or "", v.link.name)
    )
    # The seed's veth.sh line, "vethXXXX is paired with eth0@ifN on <container>", with no exec.
    lines = [
        f"{v.link.name:<15} is paired with {peer_label(v):<12} on {v.container}" for v in paired
    ]
    sharers = [f"{s} shares the network namespace of {o}" for s, o in netns_sharers(net, known)]
    text = "VETH PAIRS\n" + "\n".join(lines or ["(none)"]) + "\n"
    text += "".join(f"{line}\n" for line in sharers)
    sections = [text]
    rows: list[tuple[str, ...]] = []
    for view in bridge_views(net, known):
        stp = {None: "?", True: "yes", False: "no"}[view.link.stp_enabled]
        network = view.network.name if view.network else ""
        ports = [f"{p.name} ({p.port_state or '?'})" for p in view.ports] or [""]
        rows.append((view.link.name, network, stp, ports[0]))
        rows.extend(("", "", "", port) for port in ports[1:])
    sections.append(
        table("BRIDGES", ("BRIDGE NAME", "DOCKER NETWORK", "STP ENABLED", "INTERFACES"), rows)
    )
    sections.append(
        table(
            "ORPHANED VETHS",
            ("INTERFACE", "REASON", "BRIDGE", "PEER"),
            (
                (
                    v.link.name,
                    v.orphan_reason,
                    v.bridge or "-",
                    f"if{v.link.peer_index} in nsid {v.link.peer_nsid}"
                    if v.link.peer_nsid is not None
                    else f"if{v.link.peer_index} on the host",
                )
                for v in veths
                if v.orphan_reason
            ),
        )
    )
    sections.append(
        table(
            "OTHER VETHS (Docker's sandboxes, other runtimes', unknown owners)",
            ("INTERFACE", "STATUS", "BRIDGE", "NAMESPACE HELD BY"),
            (
                (v.link.name, v.status, v.bridge or "-", f"{v.owner_kind} {v.owner}".strip())
                for v in sorted(veths, key=lambda v: (v.status, v.link.name))
                if v.status in (VETH_DOCKER_SANDBOX, VETH_FOREIGN, VETH_UNKNOWN)
            ),
        )
    )
    if net.unreadable_netns:
        sections.append(
            f"{net.unreadable_netns} container network namespaces could not be "
            "opened (needs CAP_SYS_PTRACE): no veth was judged orphaned.\n"
        )
    return sections


def peer_label(veth: VethView) -> str:
    """eth0@if534: the container's interface and, as `ip link` shows it, its peer's ifindex."""
    return f"{veth.container_interface or '?'}@if{veth.link.index}"


def _namespace_cell(
    links: tuple[NamespaceLink, ...], shared: dict[str, bool], kind: str, refused: tuple[str, ...]
) -> str:
    if kind in refused:
        return "denied"
    inode = next((link.inode for link in links if link.kind == kind), None)
    if inode is None:
        return "-"
    return f"{inode}{'*' if shared.get(kind) else ''}"


def snapshot_json(snapshot: Snapshot) -> str:
    return (
        json.dumps(
            {name: factcodec.encode(state) for name, state in snapshot.collectors.items()},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )


def snapshot_from_json(text: str, collectors: Sequence[CollectorDef]) -> Snapshot:
    types = {c.name: c.facts_type for c in collectors}
    snapshot = Snapshot()
    for name, data in json.loads(text).items():
        facts = data.pop("facts")
        state = factcodec.decode(CollectorState, {**data, "facts": None})
        snapshot = snapshot.with_state(
            CollectorState(
                **{
                    **vars(state),
                    "facts": factcodec.decode(types[name], facts) if facts is not None else None,
                }
            )
        )
    return snapshot
