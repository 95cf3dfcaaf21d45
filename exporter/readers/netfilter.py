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
"""

from __future__ import annotations

import errno
import ipaddress
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.facts import FirewallBackend, NatRule
from exporter.readers.capabilities import lacking
from exporter.readers.iptables import Entry, destination_port, read_table
from exporter.readers.nfnetlink import NFPROTO_IPV4, NftSocket

DOCKER_CHAIN_PREFIX = "DOCKER"
# Tables Docker 29's nftables firewall backend creates.
DOCKER_NFT_TABLES = ("docker-bridges",)
_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
# linux/netfilter/nf_nat.h
NF_NAT_RANGE_MAP_IPS = 1
NF_NAT_RANGE_PROTO_SPECIFIED = 2


class FirewallUnreadable(Exception):
    def __init__(self, reason: str, missing_capabilities: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.missing_capabilities = missing_capabilities


# -- nf_tables ------------------------------------------------------------------------------


@dataclass
class _Decoded:
    """What a rule's expressions say, built up expression by expression."""

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


def _prefix(value: bytes, mask: bytes | None) -> str | None:
    bits = sum(bin(b).count("1") for b in mask) if mask else len(value) * 8
    if len(value) > 4 or bits > 32:
        return None  # compared with more than an IPv4 address holds: not a -s/-d we know
    address = ipaddress.IPv4Address(value.ljust(4, b"\0"))
    return f"{ipaddress.IPv4Network((address, bits), strict=False)}"


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
        if base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == 12 and length <= 4:
            decoded.source = _prefix(value, mask)
        elif base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == 16 and length <= 4:
            decoded.destination = _prefix(value, mask)
        elif base == "NFT_PAYLOAD_NETWORK_HEADER" and offset == 9 and len(value) == length == 1:
            decoded.protocol = _PROTOCOLS.get(value[0], str(value[0]))
        elif base == "NFT_PAYLOAD_TRANSPORT_HEADER" and offset == 2 and len(value) == length == 2:
            decoded.dport = int.from_bytes(value, "big")


def decode_nat_target(name: str, revision: int, info: bytes) -> tuple[str | None, int | None]:
    """The (address, port) of an xtables DNAT target's info struct."""
    if name != "DNAT":
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
    address = str(ipaddress.IPv4Address(info[4:8])) if flags & NF_NAT_RANGE_MAP_IPS else None
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
                name, revision, _hex(_attr(data, "NFTA_TARGET_INFO"))
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
    if address and address[0] == "value" and len(address[1]) >= 4:
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


def decode_expressions(expressions: Iterable[Any]) -> _Decoded:
    """Replay a rule's register machine far enough to recover what iptables would print.
    Expressions not listed (xt matches such as addrtype, fib, jumps) say nothing we use."""
    decoded = _Decoded()
    for expr in expressions:
        handler = _EXPRESSIONS.get(expr.get_attr("NFTA_EXPR_NAME"))
        if handler is not None:
            handler(decoded, expr.get_attr("NFTA_EXPR_DATA"))
    return decoded


def read_nftables(sock: NftSocket) -> tuple[FirewallBackend, list[NatRule]]:
    """Every ip-family chain and rule, over a socket the caller keeps open."""
    try:
        chains = sock.chains()
        rules = sock.rules(NFPROTO_IPV4)
    except OSError as exc:  # EPERM without CAP_NET_ADMIN; NetlinkError for a bad answer
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        raise FirewallUnreadable(
            f"nf_tables: {exc.strerror or exc}", lacking("CAP_NET_ADMIN") if refused else ()
        ) from exc
    docker_chains = sorted(
        f"{c.attrs.get_attr('NFTA_CHAIN_TABLE')}/{c.attrs.get_attr('NFTA_CHAIN_NAME')}"
        for c in chains
        if c.family == NFPROTO_IPV4
        and (
            str(c.attrs.get_attr("NFTA_CHAIN_NAME") or "").startswith(DOCKER_CHAIN_PREFIX)
            or c.attrs.get_attr("NFTA_CHAIN_TABLE") in DOCKER_NFT_TABLES
        )
    )
    found: list[NatRule] = []
    nat_rules = 0
    for rule in rules:
        if rule.family != NFPROTO_IPV4:  # ip and iptables-nft's tables
            continue
        table = rule.attrs.get_attr("NFTA_RULE_TABLE")
        chain = rule.attrs.get_attr("NFTA_RULE_CHAIN")
        decoded = decode_expressions(rule.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [])
        if table == "nat" or table in DOCKER_NFT_TABLES or decoded.action:
            nat_rules += table == "nat"
        if decoded.action:
            found.append(_rule("nftables", table, chain, decoded))
    return FirewallBackend("nftables", True, None, nat_rules, tuple(docker_chains)), found


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
    )


# -- ip_tables (legacy) ---------------------------------------------------------------------


def legacy_tables(procfs: str | Path) -> set[str]:
    if not Path(procfs, "net").is_dir():
        raise FirewallUnreadable(f"iptables-legacy: no {procfs}/net: is --path.procfs a procfs?")
    try:
        return set(Path(procfs, "net", "ip_tables_names").read_text().split())
    except FileNotFoundError:
        return set()  # ip_tables is not loaded: no legacy rules exist
    except PermissionError as exc:  # mode 0440, root's
        raise FirewallUnreadable(
            f"iptables-legacy: {exc.filename}: permission denied",
            lacking("CAP_DAC_READ_SEARCH"),
        ) from exc


def read_legacy(procfs: str | Path) -> tuple[FirewallBackend, list[NatRule]]:
    if "nat" not in legacy_tables(procfs):
        return FirewallBackend("legacy", True, None, 0, ()), []
    try:
        table = read_table("nat")
    except OSError as exc:
        # The raw socket needs CAP_NET_RAW, the table CAP_NET_ADMIN.
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        raise FirewallUnreadable(
            f"iptables-legacy: {exc.strerror or exc}",
            lacking("CAP_NET_RAW", "CAP_NET_ADMIN") if refused else (),
        ) from exc
    found = [
        _legacy_rule(chain.name, entry)
        for chain in table
        for entry in chain.rules
        if entry.target.name in ("MASQUERADE", "DNAT")
    ]
    docker_chains = tuple(
        sorted(f"nat/{c.name}" for c in table if c.name.startswith(DOCKER_CHAIN_PREFIX))
    )
    nat_rules = sum(len(c.rules) for c in table)
    return FirewallBackend("legacy", True, None, nat_rules, docker_chains), found


def _legacy_rule(chain: str, entry: Entry) -> NatRule:
    dnat = entry.target.name == "DNAT"
    to_address, to_port = (
        decode_nat_target("DNAT", entry.target.revision, entry.target.data)
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
    )
