"""nat rules from both firewall backends, read-only.

- nf_tables over nfnetlink (nfnetlink.py): rules made by iptables-nft, by nft, and by
  Docker's own nftables firewall backend. iptables-nft stores `-s`, `-o` and `-p --dport` as
  native expressions (payload/meta loads into registers, compared by cmp) and MASQUERADE and
  DNAT as xtables "target" expressions whose parameters are a binary struct; both are decoded
  here. libnftables' JSON would not do: it shows such a target by name only, without the DNAT
  destination.
- ip_tables ("legacy") as libiptc reads it (iptables.py). Only when the kernel already has a
  legacy nat table (/proc/net/ip_tables_names): asking for one would make the kernel load
  iptable_nat, a change to the host.

Both for IPv4 and IPv6: nf_tables' ip and ip6 families (iptables-nft's and ip6tables-nft's
tables, Docker 29's `ip docker-bridges` and `ip6 docker-bridges`), ip_tables and ip6_tables
(/proc/net/ip6_tables_names). Each rule says which family it is.
"""

from __future__ import annotations

import errno
import ipaddress
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.readers.capabilities import lacking
from exporter.readers.iptables import (
    Chain,
    Entry,
    destination_port,
    read_table,
    standard_verdict,
)
from exporter.readers.nfnetlink import NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NftSocket


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


DOCKER_CHAIN_PREFIX = "DOCKER"
# iptables-nft's tables other than nat: they hold no MASQUERADE or DNAT, so their rules are not
# decoded for NAT (the filter decoder reads filter's).
_IPTABLES_NON_NAT_TABLES = ("filter", "mangle", "raw", "security")
# Tables Docker 29's nftables firewall backend creates.
DOCKER_NFT_TABLES = ("docker-bridges",)
_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
# linux/netfilter/nf_nat.h
NF_NAT_RANGE_MAP_IPS = 1
NF_NAT_RANGE_PROTO_SPECIFIED = 2
FAMILIES = {NFPROTO_IPV4: "ipv4", NFPROTO_IPV6: "ipv6"}
# Where -s and -d sit in the network header, and how long an address is: (source, destination,
# width). The IPv4 protocol byte is compared as a payload (offset 9); IPv6's next header is
# compared as meta l4proto by iptables-nft and nft alike, so it needs no offset here.
_ADDRESSES = {NFPROTO_IPV4: (12, 16, 4), NFPROTO_IPV6: (8, 24, 16)}


class FirewallUnreadable(Exception):
    def __init__(self, reason: str, missing_capabilities: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.missing_capabilities = missing_capabilities


# -- nf_tables ------------------------------------------------------------------------------


@dataclass
class _Decoded:
    """What a rule's expressions say, built up expression by expression."""

    family: int = NFPROTO_IPV4
    source: str | None = None
    destination: str | None = None
    in_interface: str | None = None
    in_negated: bool = False
    out_interface: str | None = None
    out_negated: bool = False
    protocol: str | None = None
    dport: int | None = None
    action: str | None = None
    to_address: str | None = None
    to_port: int | None = None
    packets: int = 0
    bytes: int = 0
    registers: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def _attr(nla: Any, name: str) -> Any:
    return nla.get_attr(name) if nla is not None else None


def _value(data: Any) -> bytes:
    """NFTA_DATA_VALUE out of an NFTA_*_DATA nest, as bytes."""
    raw = _attr(data, "NFTA_DATA_VALUE")
    if isinstance(raw, str):  # pyroute2 renders some blobs as "aa:bb:..."
        return bytes.fromhex(raw.replace(":", ""))
    return bytes(raw or b"")


def _hex(blob: Any) -> bytes:
    if isinstance(blob, str):
        return bytes.fromhex(blob.replace(":", ""))
    return bytes(blob or b"")


def _interface(value: bytes) -> str:
    # iptables-nft compares "docker0\0" for `-o docker0` and "br-" (no NUL) for `-o br-+`.
    return value.split(b"\0", 1)[0].decode(errors="replace") + ("" if b"\0" in value else "+")


def _prefix(value: bytes, mask: bytes | None, width: int = 4) -> str | None:
    """A compared address prefix: iptables-nft compares the prefix's whole bytes, or the
    address masked by a bitwise. width: 4 (IPv4) or 16 (IPv6)."""
    bits = sum(bin(b).count("1") for b in mask) if mask else len(value) * 8
    if len(value) > width or bits > width * 8:
        return None  # compared with more than an address holds: not a -s/-d we know
    number = int.from_bytes(value.ljust(width, b"\0"), "big")
    if width == 16:
        return str(ipaddress.IPv6Network((number, bits), strict=False))
    return str(ipaddress.IPv4Network((number, bits), strict=False))


def _cmp(decoded: _Decoded, source: tuple[Any, ...], negated: bool, value: bytes) -> None:
    kind = source[0]
    if kind == "meta":
        key = source[1]
        if key == "NFT_META_OIFNAME":
            decoded.out_interface, decoded.out_negated = _interface(value), negated
        elif key == "NFT_META_IIFNAME":
            decoded.in_interface, decoded.in_negated = _interface(value), negated
        elif key == "NFT_META_L4PROTO" and value and not negated:
            decoded.protocol = _PROTOCOLS.get(value[0], str(value[0]))
    elif kind == "payload" and not negated and isinstance(source[3], int):
        # Fields are decoded only from a comparison of their own size; anything else (a load
        # without a length, a cmp of 0 or 16 bytes) is left undecoded, not guessed at.
        _, base, offset, length, mask = source
        source_at, destination_at, width = _ADDRESSES[decoded.family]
        if base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == source_at and length <= width:
            decoded.source = _prefix(value, mask, width)
        elif base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == destination_at and length <= width:
            decoded.destination = _prefix(value, mask, width)
        elif (
            decoded.family == NFPROTO_IPV4
            and base == "NFT_PAYLOAD_NETWORK_HEADER"
            and offset == 9
            and len(value) == length == 1
        ):
            decoded.protocol = _PROTOCOLS.get(value[0], str(value[0]))
        elif base == "NFT_PAYLOAD_TRANSPORT_HEADER" and offset == 2 and len(value) == length == 2:
            decoded.dport = int.from_bytes(value, "big")


def decode_nat_target(
    name: str, revision: int, info: bytes, family: int = NFPROTO_IPV4
) -> tuple[str | None, int | None]:
    """The (address, port) of an xtables DNAT target's info struct. IPv6 has no revision 0:
    ip6tables' DNAT is nf_nat_range (1) or nf_nat_range2 (2), with a 16-byte address."""
    if name != "DNAT":
        return None, None
    if revision == 0 and family == NFPROTO_IPV6:
        return None, None
    if revision == 0:
        # nf_nat_ipv4_multi_range_compat: rangesize, then flags, min_ip, max_ip, min, max
        if len(info) < 20:
            return None, None
        flags = struct.unpack_from("=I", info, 4)[0]
        address = str(ipaddress.IPv4Address(info[8:12])) if flags & NF_NAT_RANGE_MAP_IPS else None
        port = int.from_bytes(info[16:18], "big") if flags & NF_NAT_RANGE_PROTO_SPECIFIED else None
        return address, port
    # nf_nat_range (rev 1) / nf_nat_range2 (rev 2): flags, min_addr[16], max_addr[16], min, max
    if len(info) < 40:
        return None, None
    flags = struct.unpack_from("=I", info, 0)[0]
    address = None
    if flags & NF_NAT_RANGE_MAP_IPS:
        # union nf_inet_addr: an IPv4 address is its first 4 bytes
        if family == NFPROTO_IPV6:
            address = str(ipaddress.IPv6Address(info[4:20]))
        else:
            address = str(ipaddress.IPv4Address(info[4:8]))
    port = int.from_bytes(info[36:38], "big") if flags & NF_NAT_RANGE_PROTO_SPECIFIED else None
    return address, port


def _meta(d: _Decoded, data: Any) -> None:
    if dreg := _attr(data, "NFTA_META_DREG"):
        d.registers[dreg] = ("meta", _attr(data, "NFTA_META_KEY"))


def _payload(d: _Decoded, data: Any) -> None:
    if dreg := _attr(data, "NFTA_PAYLOAD_DREG"):
        d.registers[dreg] = (
            "payload",
            _attr(data, "NFTA_PAYLOAD_BASE"),
            _attr(data, "NFTA_PAYLOAD_OFFSET"),
            _attr(data, "NFTA_PAYLOAD_LEN"),
            None,
        )


def _bitwise(d: _Decoded, data: Any) -> None:
    # A prefix shorter than whole bytes: load, mask, then compare.
    source = d.registers.get(_attr(data, "NFTA_BITWISE_SREG"))
    if source and source[0] == "payload":
        mask = _value(_attr(data, "NFTA_BITWISE_MASK"))
        d.registers[_attr(data, "NFTA_BITWISE_DREG")] = (*source[:4], mask)


def _compare(d: _Decoded, data: Any) -> None:
    source = d.registers.get(_attr(data, "NFTA_CMP_SREG"))
    op = _attr(data, "NFTA_CMP_OP")
    if source and op in ("NFT_CMP_EQ", "NFT_CMP_NEQ"):
        _cmp(d, source, op == "NFT_CMP_NEQ", _value(_attr(data, "NFTA_CMP_DATA")))


def _immediate(d: _Decoded, data: Any) -> None:
    if dreg := _attr(data, "NFTA_IMMEDIATE_DREG"):
        d.registers[dreg] = ("value", _value(_attr(data, "NFTA_IMMEDIATE_DATA")))


def _count(value: Any) -> int:
    # pyroute2 leaves an attribute it could not decode (a be64 of 4 bytes) as raw bytes.
    return value if isinstance(value, int) and value >= 0 else 0


def _counter(d: _Decoded, data: Any) -> None:
    d.packets = _count(_attr(data, "NFTA_COUNTER_PACKETS"))
    d.bytes = _count(_attr(data, "NFTA_COUNTER_BYTES"))


def _target(d: _Decoded, data: Any) -> None:
    # iptables-nft's MASQUERADE and DNAT: xtables targets with a binary info struct.
    name = _attr(data, "NFTA_TARGET_NAME")
    if name == "MASQUERADE":
        d.action = "masquerade"
    elif name == "DNAT":
        d.action = "dnat"
        revision = _attr(data, "NFTA_TARGET_REV") or 0
        if isinstance(revision, int):  # else undecodable: which struct the info is, unknown
            d.to_address, d.to_port = decode_nat_target(
                name, revision, _hex(_attr(data, "NFTA_TARGET_INFO")), d.family
            )


def _masq(d: _Decoded, _data: Any) -> None:
    d.action = "masquerade"


def _nat(d: _Decoded, data: Any) -> None:
    # Native nft dnat: address and port were loaded into registers by immediates.
    if _attr(data, "NFTA_NAT_TYPE") not in ("NFT_NAT_DNAT", 1):
        return
    d.action = "dnat"
    address = d.registers.get(_attr(data, "NFTA_NAT_REG_ADDR_MIN"))
    port = d.registers.get(_attr(data, "NFTA_NAT_REG_PROTO_MIN"))
    if d.family == NFPROTO_IPV6:
        if address and address[0] == "value" and len(address[1]) >= 16:
            d.to_address = str(ipaddress.IPv6Address(address[1][:16]))
    elif address and address[0] == "value" and len(address[1]) >= 4:
        d.to_address = str(ipaddress.IPv4Address(address[1][:4]))
    if port and port[0] == "value" and len(port[1]) >= 2:
        d.to_port = int.from_bytes(port[1][:2], "big")


_EXPRESSIONS: dict[str, Callable[[_Decoded, Any], None]] = {
    "meta": _meta,
    "payload": _payload,
    "bitwise": _bitwise,
    "cmp": _compare,
    "immediate": _immediate,
    "counter": _counter,
    "target": _target,
    "masq": _masq,
    "nat": _nat,
}


def decode_expressions(expressions: Iterable[Any], family: int = NFPROTO_IPV4) -> _Decoded:
    """Replay a rule's register machine far enough to recover what iptables would print.
    Expressions not listed (xt matches such as addrtype, fib, jumps) say nothing we use.
    family: the table's (NFPROTO_IPV4 or NFPROTO_IPV6), which says where addresses sit."""
    decoded = _Decoded(family=family)
    for expr in expressions:
        handler = _EXPRESSIONS.get(expr.get_attr("NFTA_EXPR_NAME"))
        if handler is not None:
            handler(decoded, expr.get_attr("NFTA_EXPR_DATA"))
    return decoded


def read_nftables(sock: NftSocket) -> tuple[FirewallBackend, list[NatRule]]:
    """Every ip- and ip6-family chain and rule, over a socket the caller keeps open. Two rule
    dumps, one per family: a dump of every family would also bring inet, bridge, arp and netdev
    rules (firewalld's, for one), which say nothing about Docker's NAT."""
    try:
        chains = sock.chains()
        rules = sock.rules(NFPROTO_IPV4) + sock.rules(NFPROTO_IPV6)
    except OSError as exc:  # EPERM without CAP_NET_ADMIN; NetlinkError for a bad answer
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        raise FirewallUnreadable(
            f"nf_tables: {exc.strerror or exc}", lacking("CAP_NET_ADMIN") if refused else ()
        ) from exc
    return _nft_nat(chains, rules)


def _nft_nat(chains: list[Any], rules: list[Any]) -> tuple[FirewallBackend, list[NatRule]]:
    docker_chains: dict[int, list[str]] = {NFPROTO_IPV4: [], NFPROTO_IPV6: []}
    for c in chains:
        table = c.attrs.get_attr("NFTA_CHAIN_TABLE")
        name = str(c.attrs.get_attr("NFTA_CHAIN_NAME") or "")
        if c.family in docker_chains and (
            name.startswith(DOCKER_CHAIN_PREFIX) or table in DOCKER_NFT_TABLES
        ):
            docker_chains[c.family].append(f"{table}/{name}")
    found: list[NatRule] = []
    nat_rules = {NFPROTO_IPV4: 0, NFPROTO_IPV6: 0}
    for rule in rules:
        if rule.family not in nat_rules:  # ip/ip6, and iptables-nft's/ip6tables-nft's tables
            continue
        table = rule.attrs.get_attr("NFTA_RULE_TABLE")
        if table in _IPTABLES_NON_NAT_TABLES:
            continue  # iptables-nft's: MASQUERADE and DNAT are allowed in its nat table only
        chain = rule.attrs.get_attr("NFTA_RULE_CHAIN")
        decoded = decode_expressions(
            rule.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [], rule.family
        )
        nat_rules[rule.family] += table == "nat"
        if decoded.action:
            found.append(_rule("nftables", table, chain, decoded))
    backend = FirewallBackend(
        "nftables",
        True,
        None,
        nat_rules[NFPROTO_IPV4],
        tuple(sorted(docker_chains[NFPROTO_IPV4])),
        nat_rules_ipv6=nat_rules[NFPROTO_IPV6],
        docker_chains_ipv6=tuple(sorted(docker_chains[NFPROTO_IPV6])),
    )
    return backend, found


def _rule(backend: str, table: str, chain: str, d: _Decoded) -> NatRule:
    assert d.action is not None
    return NatRule(
        backend=backend,
        table=table,
        chain=chain,
        action=d.action,
        source=d.source,
        destination=d.destination,
        in_interface=d.in_interface,
        in_negated=d.in_negated,
        out_interface=d.out_interface,
        out_negated=d.out_negated,
        protocol=d.protocol,
        dport=d.dport,
        to_address=d.to_address,
        to_port=d.to_port,
        packets=d.packets,
        bytes=d.bytes,
        family=FAMILIES[d.family],
    )


# -- ip_tables (legacy) ---------------------------------------------------------------------


def legacy_tables(procfs: str | Path, names: str = "ip_tables_names") -> set[str]:
    if not Path(procfs, "net").is_dir():
        raise FirewallUnreadable(f"iptables-legacy: no {procfs}/net: is --path.procfs a procfs?")
    try:
        return set(Path(procfs, "net", names).read_text().split())
    except FileNotFoundError:
        return set()  # ip_tables (ip6_tables) is not loaded: no legacy rules exist
    except PermissionError as exc:  # mode 0440, root's
        raise FirewallUnreadable(
            f"iptables-legacy: {exc.filename}: permission denied",
            lacking("CAP_DAC_READ_SEARCH"),
        ) from exc


def _legacy_nat(family: str) -> list[Chain]:
    return _legacy_table("nat", family)


def _legacy_table(name: str, family: str) -> list[Chain]:
    try:
        return read_table(name, family)
    except OSError as exc:
        # The raw socket needs CAP_NET_RAW, the table CAP_NET_ADMIN.
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        tool = "ip6tables-legacy" if family == "ipv6" else "iptables-legacy"
        raise FirewallUnreadable(
            f"{tool}: {exc.strerror or exc}",
            lacking("CAP_NET_RAW", "CAP_NET_ADMIN") if refused else (),
        ) from exc


def read_legacy(procfs: str | Path) -> tuple[FirewallBackend, list[NatRule]]:
    """ip_tables' and ip6_tables' nat tables, each only when the kernel already has it."""
    tables: dict[str, list[Chain]] = {}
    if "nat" in legacy_tables(procfs):
        tables["ipv4"] = _legacy_nat("ipv4")
    if "nat" in legacy_tables(procfs, "ip6_tables_names"):
        tables["ipv6"] = _legacy_nat("ipv6")
    found = [
        _legacy_rule(chain.name, entry, family)
        for family, table in tables.items()
        for chain in table
        for entry in chain.rules
        if entry.target.name in ("MASQUERADE", "DNAT")
    ]

    def docker_chains(family: str) -> tuple[str, ...]:
        return tuple(
            sorted(
                f"nat/{c.name}"
                for c in tables.get(family, [])
                if c.name.startswith(DOCKER_CHAIN_PREFIX)
            )
        )

    def rule_count(family: str) -> int:
        return sum(len(c.rules) for c in tables.get(family, []))

    backend = FirewallBackend(
        "legacy",
        True,
        None,
        rule_count("ipv4"),
        docker_chains("ipv4"),
        nat_rules_ipv6=rule_count("ipv6"),
        docker_chains_ipv6=docker_chains("ipv6"),
    )
    return backend, found


def _legacy_rule(chain: str, entry: Entry, family: str = "ipv4") -> NatRule:
    dnat = entry.target.name == "DNAT"
    nfproto = NFPROTO_IPV6 if family == "ipv6" else NFPROTO_IPV4
    to_address, to_port = (
        decode_nat_target("DNAT", entry.target.revision, entry.target.data, nfproto)
        if dnat
        else (None, None)
    )
    protocol = None
    if entry.protocol and not entry.protocol_negated:
        protocol = _PROTOCOLS.get(entry.protocol, str(entry.protocol))
    return NatRule(
        backend="legacy",
        table="nat",
        chain=chain,
        action="dnat" if dnat else "masquerade",
        source=None if entry.source_negated else entry.source,
        destination=None if entry.destination_negated else entry.destination,
        in_interface=entry.in_interface,
        in_negated=entry.in_negated,
        out_interface=entry.out_interface,
        out_negated=entry.out_negated,
        protocol=protocol,
        dport=next(
            (port for m in entry.matches if (port := destination_port(m)) is not None), None
        ),
        to_address=to_address,
        to_port=to_port,
        packets=entry.packets,
        bytes=entry.bytes,
        family=family,
    )


# -- filter rules (both backends) -------------------------------------------------------------
#
# The filter table's rules as the forward path sees them: what each matches (addresses,
# interfaces, protocol, destination port, conntrack state) and what it does. A rule with a
# match or an action this decoder does not understand is kept, with `undecoded` saying what:
# the judge counts it and makes any verdict it could change "unknown", never "ok".

# Conntrack state bits, the same in xt_conntrack, xt_state and nft's ct state.
CT_STATES = ((1, "INVALID"), (2, "ESTABLISHED"), (4, "RELATED"), (8, "NEW"))
_CT_KNOWN = sum(bit for bit, _ in CT_STATES)
# nf_tables' verdict codes (linux/netfilter/nf_tables.h; NF_DROP, NF_ACCEPT from netfilter.h).
_NFT_VERDICTS = {0: "drop", 1: "accept", -1: "continue", -3: "jump", -4: "goto", -5: "return"}
_HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}
NF_INET_FORWARD = 2
# The xtables matches whose info this decoder reads (others make a rule undecoded).
XT_CONNTRACK_STATE = 1  # XT_CONNTRACK_STATE in match_flags
XT_CONNTRACK_STATE_ALIAS = 1 << 13  # `-m state` that iptables wrote as conntrack


@dataclass(frozen=True)
class FilterRule:
    """One rule of a filter-type chain, decoded from either backend.

    verdict: accept, drop, reject, return, jump, goto, or continue (no verdict: a counter,
    LOG). target: the chain of a jump or goto. vmap: a verdict map on an interface name
    (Docker 29's `oifname vmap @filter-forward-in-jumps`), as (interface, verdict, chain)."""

    backend: str
    family: str
    table: str
    chain: str
    position: int  # 1-based, in its chain
    verdict: str
    target: str | None = None
    source: str | None = None
    source_negated: bool = False
    destination: str | None = None
    destination_negated: bool = False
    in_interface: str | None = None
    in_negated: bool = False
    out_interface: str | None = None
    out_negated: bool = False
    protocol: str | None = None
    protocol_negated: bool = False
    dport: int | None = None
    ct_state: tuple[str, ...] = ()  # the states it accepts; empty: any
    # Matches on what a forward verdict cannot know (a source port, a comment is not one):
    # the rule matches only some of the packets it is judged for.
    narrowed: bool = False
    vmap_key: str | None = None  # "iifname" or "oifname"
    vmap: tuple[tuple[str, str, str], ...] = ()
    # An inet table's rule for the other family's packets (`meta nfproto ipv6` read for IPv4).
    other_family: bool = False
    undecoded: str = ""  # what was not understood; "" when all of it was


@dataclass(frozen=True)
class FilterChain:
    """A chain of a filter table (iptables' filter, an nft table's filter-type chain): a base
    chain has its hook (forward, input, ...), priority and policy (accept, drop)."""

    backend: str
    family: str
    table: str
    name: str
    hook: str | None = None
    priority: int = 0
    policy: str | None = None


@dataclass(frozen=True)
class FilterTables:
    """The filter rules and chains of one backend, as one reading found them."""

    chains: tuple[FilterChain, ...]
    rules: tuple[FilterRule, ...]


def ct_state_names(mask: int) -> tuple[str, ...]:
    names = tuple(name for bit, name in CT_STATES if mask & bit)
    return (*names, "OTHER") if mask & ~_CT_KNOWN else names


def _xt_ports(name: str, info: bytes) -> dict[str, Any] | str:
    if len(info) < 8:
        return f"match {name}: {len(info)} bytes"
    sport_low, sport_high, low, high = struct.unpack_from("=HHHH", info, 0)
    # tcp: option, flg_mask, flg_cmp, invflags; udp: invflags
    if any(info[8:12] if name == "tcp" else info[8:9]):
        return f"match {name} with flags or inversions"
    if (low, high) != (0, 0xFFFF) and low != high:
        return f"match {name} --dport {low}:{high}"
    fields: dict[str, Any] = {}
    if (low, high) != (0, 0xFFFF):
        fields["dport"] = low
    if (sport_low, sport_high) != (0, 0xFFFF):
        fields["narrowed"] = True
    return fields


def _xt_conntrack(revision: int, info: bytes) -> dict[str, Any] | str:
    # xt_conntrack_mtinfo1..3: 8 addresses (128 bytes), expires (8), l4proto (2), 4 ports (8),
    # match_flags u16 at 146, invert_flags u16 at 148, state_mask at 150 (u8 in revision 1).
    if revision not in (1, 2, 3) or len(info) < 152:
        return f"match conntrack revision {revision}"
    match_flags, invert_flags = struct.unpack_from("=HH", info, 146)
    if match_flags & ~XT_CONNTRACK_STATE_ALIAS != XT_CONNTRACK_STATE or invert_flags:
        return "match conntrack beyond --ctstate"
    state = info[150] if revision == 1 else struct.unpack_from("=H", info, 150)[0]
    return {"ct_state": ct_state_names(state)}


def decode_xt_match(name: str, revision: int, info: bytes) -> dict[str, Any] | str:
    """What an xtables match asks for, as FilterRule fields; a string says why it is not
    understood. tcp/udp: a destination port (a range or an inversion is not understood, a
    source port narrows); conntrack (revisions 1-3) and state: the states; comment: nothing."""
    if name == "comment":
        return {}
    if name in ("tcp", "udp"):
        return _xt_ports(name, info)
    if name == "state":
        if len(info) < 4:
            return "match state: short"
        return {"ct_state": ct_state_names(struct.unpack_from("=I", info, 0)[0])}
    if name == "conntrack":
        return _xt_conntrack(revision, info)
    return f"match {name}"


@dataclass
class _Filter:
    """A filter rule's fields, built up expression by expression."""

    family: int
    fields: dict[str, Any] = field(default_factory=dict)
    registers: dict[Any, tuple[Any, ...]] = field(default_factory=dict)
    verdict: str = "continue"
    target: str | None = None
    undecoded: list[str] = field(default_factory=list)


def _meta_cmp(f: _Filter, key: Any, negated: bool, value: bytes) -> bool:
    if key in ("NFT_META_IIFNAME", "NFT_META_OIFNAME"):
        side = "in" if key == "NFT_META_IIFNAME" else "out"
        f.fields[f"{side}_interface"] = _interface(value)
        f.fields[f"{side}_negated"] = negated
        return True
    if key == "NFT_META_L4PROTO" and len(value) == 1:
        f.fields["protocol"] = _PROTOCOLS.get(value[0], str(value[0]))
        f.fields["protocol_negated"] = negated
        return True
    if key == "NFT_META_NFPROTO" and len(value) == 1 and not negated:
        if value[0] != f.family:  # an inet table's `meta nfproto ipv6` in an ipv4 reading
            f.fields["other_family"] = True
        return True
    return False


def _payload_cmp(f: _Filter, source: tuple[Any, ...], negated: bool, value: bytes) -> bool:
    _, base, offset, length, mask = source
    source_at, destination_at, width = _ADDRESSES.get(f.family, _ADDRESSES[NFPROTO_IPV4])
    network = base == "NFT_PAYLOAD_NETWORK_HEADER"
    transport = base == "NFT_PAYLOAD_TRANSPORT_HEADER"
    if network and offset in (source_at, destination_at) and length <= width:
        prefix = _prefix(value, mask, width)
        side = "source" if offset == source_at else "destination"
        f.fields[side], f.fields[f"{side}_negated"] = prefix, negated
        return prefix is not None
    if network and f.family == NFPROTO_IPV4 and (offset, length, len(value)) == (9, 1, 1):
        f.fields["protocol"] = _PROTOCOLS.get(value[0], str(value[0]))
        f.fields["protocol_negated"] = negated
        return mask is None
    if transport and (offset, length, len(value)) == (2, 2, 2) and mask is None and not negated:
        f.fields["dport"] = int.from_bytes(value, "big")
        return True
    if transport and (offset, length, len(value)) == (0, 2, 2):
        f.fields["narrowed"] = True  # a source port: some packets only
        return True
    return False


def _filter_cmp(f: _Filter, source: tuple[Any, ...], op: Any, value: bytes) -> None:
    if op not in ("NFT_CMP_EQ", "NFT_CMP_NEQ"):
        f.undecoded.append(f"cmp op {op}")
        return
    negated = op == "NFT_CMP_NEQ"
    kind = source[0]
    if kind == "meta" and _meta_cmp(f, source[1], negated, value):
        return
    if kind == "ct" and len(source) > 2 and len(value) == 4 and not any(value) and negated:
        # `ct state established,related`: state & mask != 0; the register is host-endian.
        f.fields["ct_state"] = ct_state_names(int.from_bytes(source[2], sys.byteorder))
        return
    if kind == "payload" and isinstance(source[3], int) and _payload_cmp(f, source, negated, value):
        return
    f.undecoded.append(f"cmp on {kind}")


def _f_meta(f: _Filter, data: Any) -> None:
    if dreg := _attr(data, "NFTA_META_DREG"):
        f.registers[dreg] = ("meta", _attr(data, "NFTA_META_KEY"))
    else:
        f.undecoded.append("meta set")


def _f_payload(f: _Filter, data: Any) -> None:
    if dreg := _attr(data, "NFTA_PAYLOAD_DREG"):
        f.registers[dreg] = (
            "payload",
            _attr(data, "NFTA_PAYLOAD_BASE"),
            _attr(data, "NFTA_PAYLOAD_OFFSET"),
            _attr(data, "NFTA_PAYLOAD_LEN"),
            None,
        )
    else:
        f.undecoded.append("payload set")


def _f_ct(f: _Filter, data: Any) -> None:
    dreg = _attr(data, "NFTA_CT_DREG")
    if dreg and _attr(data, "NFTA_CT_KEY") == "NFT_CT_STATE":
        f.registers[dreg] = ("ct",)
    else:
        f.undecoded.append("ct other than state")


def _f_bitwise(f: _Filter, data: Any) -> None:
    source = f.registers.get(_attr(data, "NFTA_BITWISE_SREG"))
    mask = _value(_attr(data, "NFTA_BITWISE_MASK"))
    dreg = _attr(data, "NFTA_BITWISE_DREG")
    if source and source[0] == "payload":
        f.registers[dreg] = (*source[:4], mask)
    elif source and source[0] == "ct":
        f.registers[dreg] = ("ct", None, mask)
    else:
        f.undecoded.append("bitwise")


def _f_cmp(f: _Filter, data: Any) -> None:
    source = f.registers.get(_attr(data, "NFTA_CMP_SREG"))
    if source is None:
        f.undecoded.append("cmp of an unknown register")
    else:
        _filter_cmp(f, source, _attr(data, "NFTA_CMP_OP"), _value(_attr(data, "NFTA_CMP_DATA")))


def _f_immediate(f: _Filter, data: Any) -> None:
    dreg = _attr(data, "NFTA_IMMEDIATE_DREG")
    verdict = _attr(_attr(data, "NFTA_IMMEDIATE_DATA"), "NFTA_DATA_VERDICT")
    if dreg == 0 and verdict is not None:  # NFT_REG_VERDICT
        code = _NFT_VERDICTS.get(_attr(verdict, "NFTA_VERDICT_CODE"))
        if code is None:
            f.undecoded.append(f"verdict {_attr(verdict, 'NFTA_VERDICT_CODE')}")
        else:
            f.verdict, f.target = code, _attr(verdict, "NFTA_VERDICT_CHAIN")
    elif dreg:
        f.registers[dreg] = ("value", _value(_attr(data, "NFTA_IMMEDIATE_DATA")))


def _f_match(f: _Filter, data: Any) -> None:
    revision = _attr(data, "NFTA_MATCH_REV")
    decoded = decode_xt_match(
        str(_attr(data, "NFTA_MATCH_NAME")),
        revision if isinstance(revision, int) else -1,
        _hex(_attr(data, "NFTA_MATCH_INFO")),
    )
    if isinstance(decoded, str):
        f.undecoded.append(decoded)
    else:
        f.fields.update(decoded)


def _f_target(f: _Filter, data: Any) -> None:
    target = _attr(data, "NFTA_TARGET_NAME")
    if target == "REJECT":
        f.verdict = "reject"
    elif target not in ("LOG", "NFLOG"):
        f.undecoded.append(f"target {target}")


def _f_reject(f: _Filter, _data: Any) -> None:
    f.verdict = "reject"


def _f_nothing(_f: _Filter, _data: Any) -> None:
    pass  # a counter or a log: no match, no verdict


_FILTER_EXPRESSIONS: dict[str, Callable[[_Filter, Any], None]] = {
    "counter": _f_nothing,
    "log": _f_nothing,
    "meta": _f_meta,
    "payload": _f_payload,
    "ct": _f_ct,
    "bitwise": _f_bitwise,
    "cmp": _f_cmp,
    "immediate": _f_immediate,
    "match": _f_match,
    "target": _f_target,
    "reject": _f_reject,
}


# (family, table, set) -> its elements as (key, verdict, chain), for the verdict maps read.
SetElements = dict[tuple[int, str, str], tuple[tuple[str, str, str], ...]]


def _filter_lookup(f: _Filter, data: Any, sets: SetElements) -> None:
    """`iifname vmap @m` / `oifname vmap @m`: a verdict map keyed by an interface name."""
    source = f.registers.get(_attr(data, "NFTA_LOOKUP_SREG"))
    elements = sets.get((f.family, f.fields.get("_table", ""), str(_attr(data, "NFTA_LOOKUP_SET"))))
    if (
        _attr(data, "NFTA_LOOKUP_DREG") == 0
        and source is not None
        and source[0] == "meta"
        and source[1] in ("NFT_META_IIFNAME", "NFT_META_OIFNAME")
        and elements is not None
        and not _attr(data, "NFTA_LOOKUP_FLAGS")
    ):
        f.fields["vmap_key"] = "iifname" if source[1] == "NFT_META_IIFNAME" else "oifname"
        f.fields["vmap"] = elements
        f.verdict = "vmap"
    else:
        f.undecoded.append(f"lookup @{_attr(data, 'NFTA_LOOKUP_SET')}")


def decode_filter_rule(
    expressions: Iterable[Any],
    family: int,
    table: str,
    chain: str,
    position: int,
    *,
    sets: SetElements | None = None,
) -> FilterRule:
    """One nf_tables rule of a filter-type chain (an ip or ip6 table)."""
    f = _Filter(family=family)
    f.fields["_table"] = table
    for expr in expressions:
        name = str(expr.get_attr("NFTA_EXPR_NAME"))
        data = expr.get_attr("NFTA_EXPR_DATA")
        if name == "lookup":
            _filter_lookup(f, data, sets or {})
        elif (handler := _FILTER_EXPRESSIONS.get(name)) is not None:
            handler(f, data)
        else:
            f.undecoded.append(f"expression {name}")
    del f.fields["_table"]
    return FilterRule(
        backend="nftables",
        family=FAMILIES.get(family, "ipv4"),
        table=table,
        chain=chain,
        position=position,
        verdict=f.verdict,
        target=f.target,
        undecoded="; ".join(dict.fromkeys(f.undecoded)),
        **f.fields,
    )


def _vmap_elements(messages: Iterable[Any]) -> tuple[tuple[str, str, str], ...]:
    found = []
    for message in messages:
        for element in message.attrs.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS") or []:
            key = _attr(element.get("NFTA_SET_ELEM_KEY"), "NFTA_DATA_VALUE")
            verdict = _attr(element.get("NFTA_SET_ELEM_DATA"), "NFTA_DATA_VERDICT")
            code = _NFT_VERDICTS.get(_attr(verdict, "NFTA_VERDICT_CODE"), "unknown")
            if isinstance(key, bytes):
                name = key.split(b"\0", 1)[0].decode(errors="replace")
                found.append((name, code, str(_attr(verdict, "NFTA_VERDICT_CHAIN") or "")))
    return tuple(found)


# iptables-nft's tables other than filter: none of them decides whether a packet is forwarded.
_IPTABLES_OTHER_TABLES = ("nat", "mangle", "raw", "security")


def _table_label(table: str, source_family: int) -> str:
    """An inet table's rules apply to both families: they are read once per family, under
    "inet <name>" so that they never meet an ip or ip6 table of the same name."""
    return f"inet {table}" if source_family == NFPROTO_INET else table


def _filter_chains(
    chain_messages: Iterable[Any], family: int, source_family: int | None = None
) -> list[FilterChain]:
    source = family if source_family is None else source_family
    found = []
    for c in chain_messages:
        if c.family != source:
            continue
        raw_table = str(c.attrs.get_attr("NFTA_CHAIN_TABLE") or "")
        if source != NFPROTO_INET and raw_table in _IPTABLES_OTHER_TABLES:
            continue
        table = _table_label(raw_table, source)
        hook = c.attrs.get_attr("NFTA_CHAIN_HOOK")
        kind = c.attrs.get_attr("NFTA_CHAIN_TYPE")
        if hook is not None and kind not in ("filter", None):
            continue  # a nat or route chain
        policy = c.attrs.get_attr("NFTA_CHAIN_POLICY")
        found.append(
            FilterChain(
                backend="nftables",
                family=FAMILIES[family],
                table=table,
                name=str(c.attrs.get_attr("NFTA_CHAIN_NAME") or ""),
                hook=_HOOKS.get(_attr(hook, "NFTA_HOOK_HOOKNUM")) if hook is not None else None,
                priority=p if isinstance(p := _attr(hook, "NFTA_HOOK_PRIORITY"), int) else 0,
                policy=None if hook is None else {0: "drop", 1: "accept"}.get(policy, "accept"),
            )
        )
    return found


def forward_reachable(chains: Iterable[FilterChain], rules: Iterable[FilterRule]) -> set[str]:
    """ "table/chain" of the forward-hook base chains and every chain their rules jump or go to
    (verdict maps included), transitively."""
    by_chain: dict[str, list[FilterRule]] = {}
    for r in rules:
        by_chain.setdefault(f"{r.table}/{r.chain}", []).append(r)
    todo = [f"{c.table}/{c.name}" for c in chains if c.hook == "forward"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        table = name.split("/", 1)[0]
        for r in by_chain.get(name, []):
            if r.target:
                todo.append(f"{table}/{r.target}")
            todo.extend(f"{table}/{chain}" for _, _, chain in r.vmap if chain)
    return seen


def _nft_filter(
    sock: NftSocket,
    chain_messages: list[Any],
    rule_messages: list[Any],
    family: int,
    source_family: int | None = None,
) -> FilterTables:
    """The filter chains of one family's tables that the forward hook reaches: iptables-nft's
    filter table, Docker 29's docker-bridges, anyone's own; with source_family NFPROTO_INET,
    the inet tables' (firewalld's) as the family's packets see them."""
    source = family if source_family is None else source_family
    chains = _filter_chains(chain_messages, family, source)
    wanted = {(c.table, c.name) for c in chains}
    # Verdict maps are read only where a rule looks one up: one dump per map.
    sets: SetElements = {}
    positions: dict[tuple[str, str], int] = {}
    picked = []
    for message in rule_messages:
        if message.family != source:
            continue
        raw_table = str(message.attrs.get_attr("NFTA_RULE_TABLE") or "")
        key = (_table_label(raw_table, source), message.attrs.get_attr("NFTA_RULE_CHAIN"))
        if key not in wanted:
            continue
        positions[key] = positions.get(key, 0) + 1
        expressions = message.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or []
        for expr in expressions:
            data = expr.get_attr("NFTA_EXPR_DATA")
            if expr.get_attr("NFTA_EXPR_NAME") == "lookup" and _attr(data, "NFTA_LOOKUP_DREG") == 0:
                name = str(_attr(data, "NFTA_LOOKUP_SET"))
                if (family, key[0], name) not in sets:
                    sets[(family, key[0], name)] = _vmap_elements(
                        sock.set_elements(source, raw_table, name)
                    )
        picked.append((key, positions[key], expressions))
    rules = [
        decode_filter_rule(expressions, family, table, chain, position, sets=sets)
        for (table, chain), position, expressions in picked
    ]
    reachable = forward_reachable(chains, rules)
    # iptables' filter chains are kept even when nothing jumps to them any more: Docker's
    # DOCKER chain after FORWARD was flushed is still Docker's.
    keep = {f"{c.table}/{c.name}" for c in chains if c.table == "filter" and c.hook is None}
    keep |= reachable
    return FilterTables(
        chains=tuple(c for c in chains if f"{c.table}/{c.name}" in keep),
        rules=tuple(r for r in rules if f"{r.table}/{r.chain}" in keep),
    )


@dataclass
class FilterCache:
    """The filter tables last decoded, and the nf_tables ruleset generation they were read at:
    the kernel bumps it with every change (rules, chains, set elements), so while it stands
    the filter rules are the same and are not decoded again (their counters are not kept)."""

    generation: int | None = None
    tables: FilterTables | None = None


def read_nftables_with_filter(
    sock: NftSocket, cache: FilterCache | None = None
) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
    """read_nftables, and from the same dumps the filter chains and rules the forward hook
    reaches (IPv4 and IPv6); with a cache, decoded again only when the ruleset generation
    changed (asked before and after the dumps: the same both times, the dumps are of it)."""
    try:
        before = sock.generation() if cache is not None else None
        chains = sock.chains()
        rules = sock.rules(NFPROTO_IPV4) + sock.rules(NFPROTO_IPV6)
        # inet tables (firewalld's) filter both families' forwarded packets too; their rules
        # are dumped only where such a table has a forward-hook chain.
        inet = any(
            c.family == NFPROTO_INET
            and _attr(c.attrs.get_attr("NFTA_CHAIN_HOOK"), "NFTA_HOOK_HOOKNUM") == NF_INET_FORWARD
            for c in chains
        )
        inet_rules = sock.rules(NFPROTO_INET) if inet else []
        backend, nat = _nft_nat(chains, rules)
        after = sock.generation() if cache is not None else None
        steady = before is not None and before == after
        if cache is not None and steady and cache.generation == before and cache.tables:
            return backend, nat, cache.tables
        tables = [_nft_filter(sock, chains, rules, f) for f in (NFPROTO_IPV4, NFPROTO_IPV6)]
        if inet:
            tables += [
                _nft_filter(sock, chains, inet_rules, f, NFPROTO_INET)
                for f in (NFPROTO_IPV4, NFPROTO_IPV6)
            ]
    except OSError as exc:  # EPERM without CAP_NET_ADMIN; NetlinkError for a bad answer
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        raise FirewallUnreadable(
            f"nf_tables: {exc.strerror or exc}", lacking("CAP_NET_ADMIN") if refused else ()
        ) from exc
    found = FilterTables(
        chains=tuple(c for t in tables for c in t.chains),
        rules=tuple(r for t in tables for r in t.rules),
    )
    if cache is not None:
        cache.generation, cache.tables = (before, found) if steady else (None, None)
    return backend, nat, found


def _legacy_filter_rule(
    chain: str, position: int, entry: Entry, family: str, jumps: dict[int, str]
) -> FilterRule:
    fields: dict[str, Any] = {}
    undecoded: list[str] = []
    for match in entry.matches:
        decoded = decode_xt_match(match.name, match.revision, match.data)
        if isinstance(decoded, str):
            undecoded.append(decoded)
        else:
            fields.update(decoded)
    verdict, offset = standard_verdict(entry.target)
    target = None
    if verdict == "jump":
        verdict = "goto" if entry.goto else "jump"
        target = jumps.get(offset or 0)
        if target is None:
            undecoded.append(f"jump to offset {offset}")
    elif entry.target.name == "REJECT":
        verdict = "reject"
    elif entry.target.name in ("LOG", "NFLOG"):
        verdict = "continue"
    elif verdict == "other":  # NF_QUEUE, an xtables target: what it does is not read
        undecoded.append(f"target {entry.target.name or 'verdict'}")
        verdict = "continue"
    protocol = _PROTOCOLS.get(entry.protocol, str(entry.protocol)) if entry.protocol else None
    return FilterRule(
        backend="legacy",
        family=family,
        table="filter",
        chain=chain,
        position=position,
        verdict=verdict,
        target=target,
        source=entry.source,
        source_negated=entry.source_negated,
        destination=entry.destination,
        destination_negated=entry.destination_negated,
        in_interface=entry.in_interface,
        in_negated=entry.in_negated,
        out_interface=entry.out_interface,
        out_negated=entry.out_negated,
        protocol=protocol,
        protocol_negated=entry.protocol_negated,
        undecoded="; ".join(undecoded),
        **fields,
    )


def legacy_filter(table: list[Chain], family: str) -> FilterTables:
    """ip_tables' (ip6_tables') filter table as FilterTables: FORWARD and the user chains."""
    jumps = {c.offset: c.name for c in table}
    chains: list[FilterChain] = []
    rules: list[FilterRule] = []
    for c in table:
        if c.name in ("INPUT", "OUTPUT"):
            continue
        policy = None
        if c.name == "FORWARD":
            verdict = standard_verdict(c.tail.target)[0] if c.tail else "accept"
            policy = verdict if verdict in ("accept", "drop") else "accept"
        chains.append(
            FilterChain(
                "legacy", family, "filter", c.name, "forward" if policy else None, 0, policy
            )
        )
        rules.extend(
            _legacy_filter_rule(c.name, n, e, family, jumps) for n, e in enumerate(c.rules, 1)
        )
    return FilterTables(tuple(chains), tuple(rules))


def read_legacy_with_filter(
    procfs: str | Path,
) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
    """read_legacy, and ip_tables' and ip6_tables' filter tables, each only when the kernel
    already has it (asking for one would load iptable_filter)."""
    backend, nat = read_legacy(procfs)
    tables = []
    if "filter" in legacy_tables(procfs):
        tables.append(legacy_filter(_legacy_table("filter", "ipv4"), "ipv4"))
    if "filter" in legacy_tables(procfs, "ip6_tables_names"):
        tables.append(legacy_filter(_legacy_table("filter", "ipv6"), "ipv6"))
    return (
        backend,
        nat,
        FilterTables(
            chains=tuple(c for t in tables for c in t.chains),
            rules=tuple(r for t in tables for r in t.rules),
        ),
    )


# -- the kernel's forwarding switches ---------------------------------------------------------


def _sysctl(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_forwarding_switches(procfs: str | Path) -> tuple[int | None, ...]:
    """net.ipv4.ip_forward, net.ipv6.conf.all.forwarding, and net.bridge's
    bridge-nf-call-iptables and -ip6tables (None where unreadable; the bridge ones are absent
    until br_netfilter is loaded). /proc/sys/net is the reading process's network namespace."""
    sys_net = Path(procfs, "sys", "net")
    return (
        _sysctl(sys_net / "ipv4" / "ip_forward"),
        _sysctl(sys_net / "ipv6" / "conf" / "all" / "forwarding"),
        _sysctl(sys_net / "bridge" / "bridge-nf-call-iptables"),
        _sysctl(sys_net / "bridge" / "bridge-nf-call-ip6tables"),
    )
