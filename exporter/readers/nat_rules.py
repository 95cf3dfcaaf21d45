"""nat rules (MASQUERADE, DNAT) from both firewall backends, read-only.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.readers.capabilities import lacking
from exporter.readers.iptables import Entry, TableBlob, destination_port
from exporter.readers.netfilter_base import (
    ADDRESS_OFFSETS,
    DOCKER_CHAIN_PREFIX,
    DOCKER_NFT_TABLES,
    FAMILIES,
    PROTOCOLS,
    FirewallBackend,
    FirewallUnreadable,
    LegacyCache,
    address_prefix,
    attr,
    blob_bytes,
    data_value,
    forget_unknown_write,
    interface_name,
    legacy_table_blob,
    legacy_tables,
    register_write,
)
from exporter.readers.nfnetlink import NFPROTO_IPV4, NFPROTO_IPV6, NftSocket


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
    family: str = "ipv4"


@dataclass(frozen=True)
class NatCounters:
    """What a reading's nat rules have matched, kept apart from the rules: traffic moves these
    every run, and must not make the rules (and every verdict judged on them) look changed.
    packets[i] and bytes[i] are the i-th rule's, of the reading's rules in their order."""

    packets: tuple[int, ...] = ()
    bytes: tuple[int, ...] = ()


# A rule's counters as one backend reads them: (packets, bytes), in its rules' order.
Counts = list[tuple[int, int]]


# iptables-nft's tables other than nat: they hold no MASQUERADE or DNAT, so their rules are not
# decoded for NAT (the filter decoder reads filter's).
_IPTABLES_NON_NAT_TABLES = ("filter", "mangle", "raw", "security")
# linux/netfilter/nf_nat.h
NF_NAT_RANGE_MAP_IPS = 1
NF_NAT_RANGE_PROTO_SPECIFIED = 2


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


def _cmp(decoded: _Decoded, source: tuple[Any, ...], negated: bool, value: bytes) -> None:
    kind = source[0]
    if kind == "meta":
        key = source[1]
        if key == "NFT_META_OIFNAME":
            decoded.out_interface, decoded.out_negated = interface_name(value), negated
        elif key == "NFT_META_IIFNAME":
            decoded.in_interface, decoded.in_negated = interface_name(value), negated
        elif key == "NFT_META_L4PROTO" and value and not negated:
            decoded.protocol = PROTOCOLS.get(value[0], str(value[0]))
    elif kind == "payload" and not negated and isinstance(source[3], int):
        # Fields are decoded only from a comparison of their own size; anything else (a load
        # without a length, a cmp of 0 or 16 bytes) is left undecoded, not guessed at.
        _, base, offset, length, mask = source
        source_at, destination_at, width = ADDRESS_OFFSETS[decoded.family]
        if base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == source_at and length <= width:
            decoded.source = address_prefix(value, mask, width)
        elif base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == destination_at and length <= width:
            decoded.destination = address_prefix(value, mask, width)
        elif (
            decoded.family == NFPROTO_IPV4
            and base == "NFT_PAYLOAD_NETWORK_HEADER"
            and offset == 9
            and len(value) == length == 1
        ):
            decoded.protocol = PROTOCOLS.get(value[0], str(value[0]))
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
    if dreg := attr(data, "NFTA_META_DREG"):
        register_write(d.registers, dreg, ("meta", attr(data, "NFTA_META_KEY")))


def _payload(d: _Decoded, data: Any) -> None:
    if dreg := attr(data, "NFTA_PAYLOAD_DREG"):
        loaded = (
            "payload",
            attr(data, "NFTA_PAYLOAD_BASE"),
            attr(data, "NFTA_PAYLOAD_OFFSET"),
            attr(data, "NFTA_PAYLOAD_LEN"),
            None,
        )
        register_write(d.registers, dreg, loaded)


def _bitwise(d: _Decoded, data: Any) -> None:
    # A prefix shorter than whole bytes: load, mask, then compare.
    source = d.registers.get(attr(data, "NFTA_BITWISE_SREG"))
    if source and source[0] == "payload":
        mask = data_value(attr(data, "NFTA_BITWISE_MASK"))
        register_write(d.registers, attr(data, "NFTA_BITWISE_DREG"), (*source[:4], mask))


def _compare(d: _Decoded, data: Any) -> None:
    source = d.registers.get(attr(data, "NFTA_CMP_SREG"))
    op = attr(data, "NFTA_CMP_OP")
    if source and op in ("NFT_CMP_EQ", "NFT_CMP_NEQ"):
        _cmp(d, source, op == "NFT_CMP_NEQ", data_value(attr(data, "NFTA_CMP_DATA")))


def _immediate(d: _Decoded, data: Any) -> None:
    if dreg := attr(data, "NFTA_IMMEDIATE_DREG"):
        value = ("value", data_value(attr(data, "NFTA_IMMEDIATE_DATA")))
        register_write(d.registers, dreg, value)


def _count(value: Any) -> int:
    # pyroute2 leaves an attribute it could not decode (a be64 of 4 bytes) as raw bytes.
    return value if isinstance(value, int) and value >= 0 else 0


def _counter(d: _Decoded, data: Any) -> None:
    d.packets = _count(attr(data, "NFTA_COUNTER_PACKETS"))
    d.bytes = _count(attr(data, "NFTA_COUNTER_BYTES"))


def _target(d: _Decoded, data: Any) -> None:
    # iptables-nft's MASQUERADE and DNAT: xtables targets with a binary info struct.
    name = attr(data, "NFTA_TARGET_NAME")
    if name == "MASQUERADE":
        d.action = "masquerade"
    elif name == "DNAT":
        d.action = "dnat"
        revision = attr(data, "NFTA_TARGET_REV") or 0
        if isinstance(revision, int):  # else undecodable: which struct the info is, unknown
            d.to_address, d.to_port = decode_nat_target(
                name, revision, blob_bytes(attr(data, "NFTA_TARGET_INFO")), d.family
            )


def _masq(d: _Decoded, _data: Any) -> None:
    d.action = "masquerade"


def _nat(d: _Decoded, data: Any) -> None:
    # Native nft dnat: address and port were loaded into registers by immediates.
    if attr(data, "NFTA_NAT_TYPE") not in ("NFT_NAT_DNAT", 1):
        return
    d.action = "dnat"
    address = d.registers.get(attr(data, "NFTA_NAT_REG_ADDR_MIN"))
    port = d.registers.get(attr(data, "NFTA_NAT_REG_PROTO_MIN"))
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
    Expressions not listed (xt matches such as addrtype, fib, ct, jumps) say nothing we use,
    but may have written a register: what the registers held is forgotten then, so a later
    compare never reads a stale value as its own.
    family: the table's (NFPROTO_IPV4 or NFPROTO_IPV6), which says where addresses sit."""
    decoded = _Decoded(family=family)
    for expr in expressions:
        handler = _EXPRESSIONS.get(expr.get_attr("NFTA_EXPR_NAME"))
        if handler is not None:
            handler(decoded, expr.get_attr("NFTA_EXPR_DATA"))
        else:
            forget_unknown_write(
                decoded.registers, expr.get_attr("NFTA_EXPR_NAME"), expr.get_attr("NFTA_EXPR_DATA")
            )
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
    backend, found = nft_nat(chains, rules)[:2]
    return backend, found


# Where an nf_tables rule is, for as long as the ruleset generation stands: family, table,
# chain, handle (unique in its table).
RuleKey = tuple[int, str, str, int]


@dataclass
class NatDecodes:
    """The rules one reading decoded, by their messages' keys (the bytes nfnetlink.RuleParses
    knows a rule by): the same bytes decode the same, so only new, changed or counted-since
    rules are decoded again. Messages without a key are decoded every time."""

    last: dict[bytes, _Decoded] = field(default_factory=dict)


def nft_nat(
    chains: list[Any], rules: list[Any], decodes: NatDecodes | None = None
) -> tuple[FirewallBackend, list[NatRule], Counts, list[RuleKey]]:
    """The nat backend and its MASQUERADE and DNAT rules, their counters and where each rule
    is (to read only the counters again while the generation stands: nft_counts). With
    decodes, a rule message decoded by the last call is not decoded again."""
    kept = decodes.last if decodes is not None else {}
    made: dict[bytes, _Decoded] = {}
    docker_chains: dict[int, list[str]] = {NFPROTO_IPV4: [], NFPROTO_IPV6: []}
    for c in chains:
        table = c.attrs.get_attr("NFTA_CHAIN_TABLE")
        name = str(c.attrs.get_attr("NFTA_CHAIN_NAME") or "")
        if c.family in docker_chains and (
            name.startswith(DOCKER_CHAIN_PREFIX) or table in DOCKER_NFT_TABLES
        ):
            docker_chains[c.family].append(f"{table}/{name}")
    found: list[NatRule] = []
    counts: Counts = []
    keys: list[RuleKey] = []
    nat_rules = {NFPROTO_IPV4: 0, NFPROTO_IPV6: 0}
    for rule in rules:
        if rule.family not in nat_rules:  # ip/ip6, and iptables-nft's/ip6tables-nft's tables
            continue
        table = rule.attrs.get_attr("NFTA_RULE_TABLE")
        if table in _IPTABLES_NON_NAT_TABLES:
            continue  # iptables-nft's: MASQUERADE and DNAT are allowed in its nat table only
        chain = rule.attrs.get_attr("NFTA_RULE_CHAIN")
        key = rule.key
        decoded = kept.get(key) if key else None
        if decoded is None:
            decoded = decode_expressions(
                rule.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [], rule.family
            )
        if key:
            made[key] = decoded
        nat_rules[rule.family] += table == "nat"
        if decoded.action:
            found.append(_rule("nftables", table, chain, decoded))
            counts.append((decoded.packets, decoded.bytes))
            handle = rule.attrs.get_attr("NFTA_RULE_HANDLE")
            keys.append((rule.family, table, chain, handle if isinstance(handle, int) else -1))
    backend = FirewallBackend(
        "nftables",
        True,
        None,
        nat_rules[NFPROTO_IPV4],
        tuple(sorted(docker_chains[NFPROTO_IPV4])),
        nat_rules_ipv6=nat_rules[NFPROTO_IPV6],
        docker_chains_ipv6=tuple(sorted(docker_chains[NFPROTO_IPV6])),
    )
    if decodes is not None:
        decodes.last = made  # only the rules there are now
    return backend, found, counts, keys


def nft_counts(sock: NftSocket, keys: list[RuleKey]) -> Counts | None:
    """The counters of the rules at these keys, read again without decoding a rule: one dump
    per (family, table) they are in, parsed no further than each rule's counter. None when a
    rule is no longer there (the ruleset changed meanwhile: read it all again)."""
    found: dict[tuple[Any, ...], tuple[int, int]] = {}
    for family, table in dict.fromkeys((k[0], k[1]) for k in keys):
        for rule in sock.rule_counts(family, table):
            if rule.table != table:
                continue  # a kernel that dumps every table
            counted = rule.counted or (0, 0)
            found[(family, table, rule.chain, rule.handle)] = (
                _count(counted[0]),
                _count(counted[1]),
            )
    counts: Counts = []
    for key in keys:
        if key not in found:
            return None
        counts.append(found[key])
    return counts


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
        family=FAMILIES[d.family],
    )


# -- ip_tables (legacy) ---------------------------------------------------------------------


@dataclass(frozen=True)
class _LegacyNat:
    """What one legacy nat table says: its MASQUERADE and DNAT rules and where each sits in
    the table (for its counters), how many rules it has, Docker's chains in it."""

    rules: tuple[NatRule, ...]
    offsets: tuple[int, ...]
    rule_count: int
    docker_chains: tuple[str, ...]


def _legacy_nat(table: TableBlob) -> _LegacyNat:
    chains = table.chains()
    entries = [
        (chain.name, entry)
        for chain in chains
        for entry in chain.rules
        if entry.target.name in ("MASQUERADE", "DNAT")
    ]
    return _LegacyNat(
        rules=tuple(_legacy_rule(name, entry, table.family) for name, entry in entries),
        offsets=tuple(entry.offset for _, entry in entries),
        rule_count=sum(len(c.rules) for c in chains),
        docker_chains=tuple(
            sorted(f"nat/{c.name}" for c in chains if c.name.startswith(DOCKER_CHAIN_PREFIX))
        ),
    )


def read_legacy(procfs: str | Path) -> tuple[FirewallBackend, list[NatRule]]:
    """ip_tables' and ip6_tables' nat tables, each only when the kernel already has it."""
    backend, found, _ = read_legacy_counted(procfs, LegacyCache())
    return backend, found


def read_legacy_counted(
    procfs: str | Path, cache: LegacyCache
) -> tuple[FirewallBackend, list[NatRule], Counts]:
    """read_legacy, with each rule's counters; a table is decoded again only when its rules
    changed (cache), its counters read from where its rules sit."""
    tables: dict[str, tuple[_LegacyNat, TableBlob]] = {}
    for family, names in (("ipv4", "ip_tables_names"), ("ipv6", "ip6_tables_names")):
        if "nat" in legacy_tables(procfs, names):
            blob = legacy_table_blob("nat", family)
            tables[family] = (cache.made("nat", blob, _legacy_nat), blob)
    found = [rule for made, _ in tables.values() for rule in made.rules]
    counts = [blob.counters(at) for made, blob in tables.values() for at in made.offsets]
    none = _LegacyNat((), (), 0, ())
    ipv4, ipv6 = (tables[f][0] if f in tables else none for f in ("ipv4", "ipv6"))
    backend = FirewallBackend(
        "legacy",
        True,
        None,
        ipv4.rule_count,
        ipv4.docker_chains,
        nat_rules_ipv6=ipv6.rule_count,
        docker_chains_ipv6=ipv6.docker_chains,
    )
    return backend, found, counts


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
        protocol = PROTOCOLS.get(entry.protocol, str(entry.protocol))
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
        family=family,
    )
