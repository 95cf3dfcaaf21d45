"""Filter rules (iptables' filter table, nft filter-type chains) from both firewall backends,
read-only: the chains the forward hook reaches and what their rules match and do.

A rule with a match or an action this decoder does not understand is kept, with `undecoded`
saying what: the judge counts it and makes any verdict it could change "unknown", never "ok".
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from exporter.readers.iptables import Chain, Entry, standard_verdict
from exporter.readers.netfilter_base import (
    ADDRESS_OFFSETS,
    FAMILIES,
    PROTOCOLS,
    address_prefix,
    attr,
    blob_bytes,
    data_value,
    forget_unknown_write,
    interface_name,
    register_write,
)
from exporter.readers.nfnetlink import NFPROTO_INET, NFPROTO_IPV4, NftSocket

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
    # `-m set [!] --match-set <name> src|dst`: the set's name ("#<index>" when the kernel did
    # not say it), whether it is matched on the source, and negated.
    match_set: str | None = None
    match_set_src: bool = False
    match_set_negated: bool = False
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


# ipset's flags in struct xt_set_info (linux/netfilter/ipset/ip_set.h): bit 0 negates, bit d
# says dimension d is the source; return-nomatch changes what matches.
IPSET_INV_MATCH, IPSET_DIM_ONE_SRC, IPSET_RETURN_NOMATCH = 1, 2, 0x80


def _xt_set(revision: int, info: bytes) -> dict[str, Any] | str:
    """xt_set_info_match_v1..v4: struct xt_set_info (u16 index, u8 dim, u8 flags), then from
    revision 3 the packet and byte counter matches (an op of 0: not matched) and flags."""
    if revision not in (1, 2, 3, 4) or len(info) < 4:
        return f"match set revision {revision}"
    index, dim, flags = struct.unpack_from("=HBB", info, 0)
    if dim != 1 or flags & IPSET_RETURN_NOMATCH:
        return "match set beyond one dimension"
    # The counter ops: v3's {u8 op; u64 value} at 8 and 24, v4's {u64 value; u8 op} at 8, 24.
    ops = {3: (8, 24), 4: (16, 32)}.get(revision, ())
    if any(len(info) <= at or info[at] for at in ops):
        return "match set with counters"
    return {
        "match_set": f"#{index}",
        "match_set_src": bool(flags & IPSET_DIM_ONE_SRC),
        "match_set_negated": bool(flags & IPSET_INV_MATCH),
    }


def decode_xt_match(name: str, revision: int, info: bytes) -> dict[str, Any] | str:
    """What an xtables match asks for, as FilterRule fields; a string says why it is not
    understood. tcp/udp: a destination port (a range or an inversion is not understood, a
    source port narrows); conntrack (revisions 1-3) and state: the states; set (revisions 1-4,
    one dimension, no counters): the set, by index; comment: nothing."""
    if name == "comment":
        return {}
    if name in ("tcp", "udp"):
        return _xt_ports(name, info)
    if name == "state":
        return _xt_state(info)
    decoder = {"conntrack": _xt_conntrack, "set": _xt_set}.get(name)
    return decoder(revision, info) if decoder is not None else f"match {name}"


def _xt_state(info: bytes) -> dict[str, Any] | str:
    if len(info) < 4:
        return "match state: short"
    return {"ct_state": ct_state_names(struct.unpack_from("=I", info, 0)[0])}


@dataclass
class _Filter:
    """A filter rule's fields, built up expression by expression."""

    family: int
    fields: dict[str, Any] = field(default_factory=dict)
    registers: dict[Any, tuple[Any, ...]] = field(default_factory=dict)
    verdict: str = "continue"
    target: str | None = None
    undecoded: list[str] = field(default_factory=list)

    def write(self, dreg: Any, value: tuple[Any, ...]) -> None:
        register_write(self.registers, dreg, value)

    def poison(self, what: str, dreg: Any = None) -> None:
        """An expression not understood: the rule is undecoded, and what it wrote is unknown
        (its destination register, or, not knowing which, every register)."""
        self.undecoded.append(what)
        register_write(self.registers, dreg, None)


def _meta_cmp(f: _Filter, key: Any, negated: bool, value: bytes) -> bool:
    if key in ("NFT_META_IIFNAME", "NFT_META_OIFNAME"):
        side = "in" if key == "NFT_META_IIFNAME" else "out"
        f.fields[f"{side}_interface"] = interface_name(value)
        f.fields[f"{side}_negated"] = negated
        return True
    if key == "NFT_META_L4PROTO" and len(value) == 1:
        f.fields["protocol"] = PROTOCOLS.get(value[0], str(value[0]))
        f.fields["protocol_negated"] = negated
        return True
    if key == "NFT_META_NFPROTO" and len(value) == 1 and not negated:
        if value[0] != f.family:  # an inet table's `meta nfproto ipv6` in an ipv4 reading
            f.fields["other_family"] = True
        return True
    return False


def _payload_cmp(f: _Filter, source: tuple[Any, ...], negated: bool, value: bytes) -> bool:
    _, base, offset, length, mask = source
    source_at, destination_at, width = ADDRESS_OFFSETS.get(f.family, ADDRESS_OFFSETS[NFPROTO_IPV4])
    network = base == "NFT_PAYLOAD_NETWORK_HEADER"
    transport = base == "NFT_PAYLOAD_TRANSPORT_HEADER"
    if network and offset in (source_at, destination_at) and length <= width:
        prefix = address_prefix(value, mask, width)
        side = "source" if offset == source_at else "destination"
        f.fields[side], f.fields[f"{side}_negated"] = prefix, negated
        return prefix is not None
    if network and f.family == NFPROTO_IPV4 and (offset, length, len(value)) == (9, 1, 1):
        f.fields["protocol"] = PROTOCOLS.get(value[0], str(value[0]))
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
    if dreg := attr(data, "NFTA_META_DREG"):
        f.write(dreg, ("meta", attr(data, "NFTA_META_KEY")))
    else:
        f.undecoded.append("meta set")


def _f_payload(f: _Filter, data: Any) -> None:
    if dreg := attr(data, "NFTA_PAYLOAD_DREG"):
        f.write(
            dreg,
            (
                "payload",
                attr(data, "NFTA_PAYLOAD_BASE"),
                attr(data, "NFTA_PAYLOAD_OFFSET"),
                attr(data, "NFTA_PAYLOAD_LEN"),
                None,
            ),
        )
    else:
        f.undecoded.append("payload set")


def _f_ct(f: _Filter, data: Any) -> None:
    dreg = attr(data, "NFTA_CT_DREG")
    if dreg and attr(data, "NFTA_CT_KEY") == "NFT_CT_STATE":
        f.write(dreg, ("ct",))
    elif dreg:
        # `ct mark`, `ct status`, ...: loaded, so a compare follows; what it compares is unknown.
        f.poison(f"ct key {attr(data, 'NFTA_CT_KEY')}", dreg)
    else:
        f.undecoded.append("ct set")


def _f_bitwise(f: _Filter, data: Any) -> None:
    source = f.registers.get(attr(data, "NFTA_BITWISE_SREG"))
    mask = data_value(attr(data, "NFTA_BITWISE_MASK"))
    dreg = attr(data, "NFTA_BITWISE_DREG")
    if source and source[0] == "payload":
        f.write(dreg, (*source[:4], mask))
    elif source and source[0] == "ct":
        f.write(dreg, ("ct", None, mask))
    else:
        f.poison("bitwise", dreg)


def _f_cmp(f: _Filter, data: Any) -> None:
    source = f.registers.get(attr(data, "NFTA_CMP_SREG"))
    if source is None:
        f.undecoded.append("cmp of an unknown register")
    else:
        _filter_cmp(f, source, attr(data, "NFTA_CMP_OP"), data_value(attr(data, "NFTA_CMP_DATA")))


def _f_immediate(f: _Filter, data: Any) -> None:
    dreg = attr(data, "NFTA_IMMEDIATE_DREG")
    verdict = attr(attr(data, "NFTA_IMMEDIATE_DATA"), "NFTA_DATA_VERDICT")
    if dreg == 0 and verdict is not None:  # NFT_REG_VERDICT
        code = _NFT_VERDICTS.get(attr(verdict, "NFTA_VERDICT_CODE"))
        if code is None:
            f.undecoded.append(f"verdict {attr(verdict, 'NFTA_VERDICT_CODE')}")
        else:
            f.verdict, f.target = code, attr(verdict, "NFTA_VERDICT_CHAIN")
    elif dreg:
        f.write(dreg, ("value", data_value(attr(data, "NFTA_IMMEDIATE_DATA"))))


def _f_match(f: _Filter, data: Any) -> None:
    revision = attr(data, "NFTA_MATCH_REV")
    decoded = decode_xt_match(
        str(attr(data, "NFTA_MATCH_NAME")),
        revision if isinstance(revision, int) else -1,
        blob_bytes(attr(data, "NFTA_MATCH_INFO")),
    )
    if isinstance(decoded, str):
        f.undecoded.append(decoded)
    else:
        f.fields.update(decoded)


def _f_target(f: _Filter, data: Any) -> None:
    target = attr(data, "NFTA_TARGET_NAME")
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
    source = f.registers.get(attr(data, "NFTA_LOOKUP_SREG"))
    elements = sets.get((f.family, f.fields.get("_table", ""), str(attr(data, "NFTA_LOOKUP_SET"))))
    if (
        attr(data, "NFTA_LOOKUP_DREG") == 0
        and source is not None
        and source[0] == "meta"
        and source[1] in ("NFT_META_IIFNAME", "NFT_META_OIFNAME")
        and elements is not None
        and not attr(data, "NFTA_LOOKUP_FLAGS")
    ):
        f.fields["vmap_key"] = "iifname" if source[1] == "NFT_META_IIFNAME" else "oifname"
        f.fields["vmap"] = elements
        f.verdict = "vmap"
    else:
        # A set or a data map: a map writes its register (a verdict map, the verdict).
        dreg = attr(data, "NFTA_LOOKUP_DREG")
        f.poison(f"lookup @{attr(data, 'NFTA_LOOKUP_SET')}", dreg if dreg else -1)


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
            # fib, rt, socket, numgen, hash, ...: what it wrote is unknown (fib's register is
            # read; of the others, every register is forgotten).
            f.undecoded.append(f"expression {name}")
            forget_unknown_write(f.registers, name, data)
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


def _read_vmap(
    sock: NftSocket, sets: SetElements, lookup: Any, *, family: int, source: int, raw_table: str
) -> None:
    """A verdict map a lookup reads (destination register 0), dumped into sets once."""
    if attr(lookup, "NFTA_LOOKUP_DREG") != 0:
        return
    name = str(attr(lookup, "NFTA_LOOKUP_SET"))
    table = _table_label(raw_table, source)
    if (family, table, name) not in sets:
        sets[(family, table, name)] = _vmap_elements(sock.set_elements(source, raw_table, name))


def _vmap_elements(messages: Iterable[Any]) -> tuple[tuple[str, str, str], ...]:
    found = []
    for message in messages:
        for element in message.attrs.get_attr("NFTA_SET_ELEM_LIST_ELEMENTS") or []:
            key = attr(element.get("NFTA_SET_ELEM_KEY"), "NFTA_DATA_VALUE")
            verdict = attr(element.get("NFTA_SET_ELEM_DATA"), "NFTA_DATA_VERDICT")
            code = _NFT_VERDICTS.get(attr(verdict, "NFTA_VERDICT_CODE"), "unknown")
            if isinstance(key, bytes):
                name = key.split(b"\0", 1)[0].decode(errors="replace")
                found.append((name, code, str(attr(verdict, "NFTA_VERDICT_CHAIN") or "")))
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
                hook=_HOOKS.get(attr(hook, "NFTA_HOOK_HOOKNUM")) if hook is not None else None,
                priority=p if isinstance(p := attr(hook, "NFTA_HOOK_PRIORITY"), int) else 0,
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


@dataclass
class FilterDecodes:
    """The filter rules the last reading decoded, for each (family, source family), by their
    messages' keys (nfnetlink.RuleParses): the same bytes decode to the same rule, its
    position in its chain aside. A rule that looks a set up is decoded every time (a set's
    elements are not in its bytes); so is a message without a key."""

    last: dict[tuple[int, int], dict[bytes, FilterRule]] = field(default_factory=dict)


def nft_filter(
    sock: NftSocket,
    chain_messages: list[Any],
    rule_messages: list[Any],
    family: int,
    source_family: int | None = None,
    *,
    decodes: FilterDecodes | None = None,
) -> FilterTables:
    """The filter chains of one family's tables that the forward hook reaches: iptables-nft's
    filter table, Docker 29's docker-bridges, anyone's own; with source_family NFPROTO_INET,
    the inet tables' (firewalld's) as the family's packets see them. With decodes, a rule the
    last reading decoded is not decoded again."""
    source = family if source_family is None else source_family
    chains = _filter_chains(chain_messages, family, source)
    wanted = {(c.table, c.name) for c in chains}
    kept = decodes.last.get((family, source), {}) if decodes is not None else {}
    made: dict[bytes, FilterRule] = {}
    # Verdict maps are read only where a rule looks one up: one dump per map.
    sets: SetElements = {}
    positions: dict[tuple[str, str], int] = {}
    # (table, chain), position, the key to keep its decoding by, and the rule decoded by the
    # last reading or the expressions to decode.
    picked: list[tuple[tuple[str, str], int, bytes, FilterRule | list[Any]]] = []
    for message in rule_messages:
        if message.family != source:
            continue
        raw_table = str(message.attrs.get_attr("NFTA_RULE_TABLE") or "")
        key = (_table_label(raw_table, source), message.attrs.get_attr("NFTA_RULE_CHAIN"))
        if key not in wanted:
            continue
        positions[key] = positions.get(key, 0) + 1
        known = kept.get(message.key) if message.key else None
        if known is not None:
            picked.append((key, positions[key], message.key, known))
            continue
        expressions = list(message.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [])
        looks_up = False
        for expr in expressions:
            if expr.get_attr("NFTA_EXPR_NAME") == "lookup":
                looks_up = True
                data = expr.get_attr("NFTA_EXPR_DATA")
                _read_vmap(sock, sets, data, family=family, source=source, raw_table=raw_table)
        picked.append((key, positions[key], b"" if looks_up else message.key, expressions))
    rules = []
    for (table, chain), position, message_key, known_or_expressions in picked:
        if isinstance(known_or_expressions, FilterRule):
            rule = known_or_expressions
            rule = rule if rule.position == position else replace(rule, position=position)
        else:
            rule = decode_filter_rule(
                known_or_expressions, family, table, chain, position, sets=sets
            )
        if message_key:
            made[message_key] = rule
        rules.append(rule)
    if decodes is not None:
        decodes.last[(family, source)] = made  # only the rules there are now
    reachable = forward_reachable(chains, rules)
    # iptables' filter chains are kept even when nothing jumps to them any more: Docker's
    # DOCKER chain after FORWARD was flushed is still Docker's.
    keep = {f"{c.table}/{c.name}" for c in chains if c.table == "filter" and c.hook is None}
    keep |= reachable
    return FilterTables(
        chains=tuple(c for c in chains if f"{c.table}/{c.name}" in keep),
        rules=tuple(r for r in rules if f"{r.table}/{r.chain}" in keep),
    )


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
    protocol = PROTOCOLS.get(entry.protocol, str(entry.protocol)) if entry.protocol else None
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


def set_indices(tables: Iterable[FilterTables]) -> set[int]:
    """The ipset indices the rules name and no name was found for yet."""
    return {
        int(r.match_set[1:])
        for t in tables
        for r in t.rules
        if r.match_set is not None and r.match_set.startswith("#")
    }


def with_set_names(tables: FilterTables, names: dict[int, str]) -> FilterTables:
    """The tables with each set match's index replaced by the set's name where it is known."""
    if not any(r.match_set for r in tables.rules):
        return tables
    return FilterTables(
        tables.chains,
        tuple(
            replace(r, match_set=names.get(int(r.match_set[1:]), r.match_set))
            if r.match_set is not None and r.match_set.startswith("#")
            else r
            for r in tables.rules
        ),
    )
