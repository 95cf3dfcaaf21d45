"""Hostile input into the filter decoders and the forward walk: nf_tables rule messages with
odd verdicts, ct loads, xtables matches and lookups; ip_tables filter entries with odd jumps;
xtables match infos of any length; and rule sets of any shape (jump cycles, deep chains)
through forward_verdict. Valid records or a clear refusal, never a crash or a hang."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter.collectors.firewall.facts import FirewallFacts
from exporter.collectors.firewall.judge import forward_verdict
from exporter.readers.filter_rules import (
    CT_STATES,
    FilterChain,
    FilterDecodes,
    FilterRule,
    SetElements,
    _vmap_elements,
    decode_filter_rule,
    decode_xt_match,
    legacy_filter,
    nft_filter,
)
from exporter.readers.iptables import IptablesError, chains, parse_entries
from exporter.readers.netfilter_base import FirewallBackend
from exporter.readers.netlink import NetlinkError
from exporter.readers.nfnetlink import CHAIN, RULE, SET_ELEMENTS, RuleParses, parse_message
from tests.fuzzing import FUZZ, HEADER, ipt_extension, message, mutated, nla
from tests.unit.test_fuzz_iptables import ipt_entry
from tests.unit.test_fuzz_nftables import (
    REGISTERS,
    attr,
    be32,
    data_attr,
    expr_of,
    expression,
    hostile_expressions,
    nested,
    nft_parse,
    rule_message,
)

NFT_SET_ELEMENTS = (10 << 8) | 12  # NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSETELEM
VERDICTS = {"accept", "drop", "reject", "return", "jump", "goto", "continue", "vmap"}
STATES = {name for _, name in CT_STATES} | {"OTHER"}


def verdict_data(code: int, chain: bytes | None) -> bytes:
    inner = nla(1, struct.pack(">i", code)) + (nla(2, chain) if chain is not None else b"")
    return nested(2, nested(2, inner))  # NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { ... } }


filter_expressions = st.lists(
    st.one_of(
        hostile_expressions.map(lambda e: e[0] if e else b""),
        st.tuples(
            st.integers(-6, 3) | st.integers(-(2**31), 2**31 - 1),
            st.one_of(st.none(), st.binary(max_size=12), st.just(b"DOCKER\0")),
        ).map(lambda t: expression("immediate", nla(1, be32(0)), verdict_data(*t))),
        expr_of("ct", attr(1, REGISTERS), attr(2, st.integers(0, 3).map(be32))),
        expr_of(
            "match",
            attr(1, st.sampled_from([b"conntrack\0", b"tcp\0", b"udp\0", b"state\0", b"x\0"])),
            attr(2, st.integers(0, 4).map(be32)),
            attr(3, st.binary(max_size=200)),
        ),
        expr_of("lookup", attr(1, st.just(b"m\0")), attr(2, REGISTERS), attr(3, REGISTERS)),
        expr_of("reject", attr(1, REGISTERS)),
        expr_of("cmp", attr(1, REGISTERS), attr(2, st.integers(0, 6).map(be32)), data_attr(3)),
    ).filter(bool),
    max_size=10,
)


def valid(rule: FilterRule) -> None:
    assert rule.verdict in VERDICTS
    assert set(rule.ct_state) <= STATES
    for prefix in (rule.source, rule.destination):
        if prefix is not None:
            ipaddress.ip_network(prefix)
    assert rule.dport is None or 0 <= rule.dport <= 0xFFFF
    assert isinstance(rule.undecoded, str)


@FUZZ
@given(expressions=filter_expressions)
def test_hostile_nf_tables_filter_rules_decode_to_valid_records(expressions: list[bytes]) -> None:
    for msg in nft_parse(rule_message(expressions, table=b"filter", chain=b"FORWARD")):
        sets: SetElements = {(2, "filter", "m"): (("docker0", "jump", "X"),)}
        valid(
            decode_filter_rule(
                msg.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [], 2, "filter", "FORWARD", 1,
                sets=sets,
            )
        )  # fmt: skip


@FUZZ
@given(
    name=st.sampled_from(["conntrack", "state", "tcp", "udp", "comment", "limit"]),
    revision=st.integers(-1, 5),
    info=st.binary(max_size=200),
)
def test_any_xtables_match_info_decodes_or_is_named_undecoded(
    name: str, revision: int, info: bytes
) -> None:
    found = decode_xt_match(name, revision, info)
    assert isinstance(found, (dict, str))
    if isinstance(found, dict):
        assert set(found) <= {"dport", "narrowed", "ct_state"}


def standard(verdict: int) -> bytes:
    return ipt_extension(b"", struct.pack("=i", verdict) + b"\0" * 4)


FORWARD_ENTRIES = (
    ipt_entry(b"", standard(200))  # a jump to an offset
    + ipt_entry(b"", standard(-2))
    + ipt_entry(b"", standard(-1))
)


@FUZZ
@given(data=st.one_of(st.binary(max_size=600), mutated(st.just(FORWARD_ENTRIES), 0)))
def test_hostile_ip_tables_filter_entries_decode_or_raise(data: bytes) -> None:
    try:
        entries = parse_entries(data)
    except IptablesError:
        return
    for rule in legacy_filter(chains(entries, (0, 0, 0, 0, 0), 0b00100), "ipv4").rules:
        valid(rule)


CHAINS = ["FORWARD", "A", "B", "DOCKER", "DOCKER-USER"]
rules = st.builds(
    FilterRule,
    backend=st.just("nftables"),
    family=st.just("ipv4"),
    table=st.just("filter"),
    chain=st.sampled_from(CHAINS),
    position=st.integers(1, 9),
    verdict=st.sampled_from(sorted(VERDICTS)),
    target=st.one_of(st.none(), st.sampled_from(CHAINS)),
    destination=st.one_of(st.none(), st.sampled_from(["172.17.0.2/32", "0.0.0.0/0", "x"])),
    out_interface=st.one_of(st.none(), st.sampled_from(["docker0", "br-+", "+"])),
    protocol=st.one_of(st.none(), st.sampled_from(["tcp", "udp"])),
    dport=st.one_of(st.none(), st.just(80)),
    ct_state=st.sampled_from([(), ("NEW",), ("ESTABLISHED", "RELATED")]),
    vmap_key=st.sampled_from([None, "oifname", "iifname"]),
    vmap=st.lists(
        st.tuples(
            st.sampled_from(["docker0", "eth0"]),
            st.sampled_from(["jump", "drop"]),
            st.sampled_from(CHAINS),
        ),
        max_size=2,
    ).map(tuple),
    undecoded=st.sampled_from(["", "match limit"]),
)


@FUZZ
@given(found=st.lists(rules, max_size=25), policy=st.sampled_from(["accept", "drop"]))
def test_any_rule_set_gives_a_verdict_without_looping(found: list[FilterRule], policy: str) -> None:
    chains_ = tuple(FilterChain("nftables", "ipv4", "filter", c) for c in CHAINS[1:])
    forward = FilterChain("nftables", "ipv4", "filter", "FORWARD", "forward", 0, policy)
    nat = FirewallFacts(
        backends=(FirewallBackend("nftables", True, None, 0, ("filter/DOCKER",)),),
        expectations=None,
        filter_chains=(forward, *chains_),
        filter_rules=tuple(found),
    )
    verdict = forward_verdict(nat, "ipv4", "172.17.0.2", 80, "tcp", "docker0")
    assert verdict.state in ("ok", "restricted", "broken", "unknown")
    assert verdict.reason


def set_element(key: bytes, code: int, chain: bytes | None) -> bytes:
    verdict = nla(1, struct.pack(">i", code)) + (nla(2, chain) if chain is not None else b"")
    return nested(1, nested(1, nla(1, key)), nested(2, nested(2, verdict)))


@FUZZ
@given(
    elements=st.lists(
        st.tuples(
            st.binary(max_size=20) | st.just(b"docker0\0"),
            st.integers(-6, 2),
            st.one_of(st.none(), st.binary(max_size=20), st.just(b"filter-forward-in__docker0\0")),
        ),
        max_size=5,
    ),
    tail=st.binary(max_size=16),
)
def test_hostile_verdict_map_elements_decode_or_are_refused(
    elements: list[tuple[bytes, int, bytes | None]], tail: bytes
) -> None:
    body = (
        struct.pack("=BBH", 2, 0, 0)
        + nla(1, b"docker-bridges\0")
        + nla(2, b"filter-forward-in-jumps\0")
        + nested(3, *(set_element(*e) for e in elements))
        + tail
    )
    try:
        parsed = [parse_message(message(NFT_SET_ELEMENTS, body), SET_ELEMENTS)]
    except NetlinkError:
        return
    for interface, verdict, chain in _vmap_elements(parsed):
        assert isinstance(interface, str) and isinstance(chain, str)
        assert verdict in {"accept", "drop", "continue", "jump", "goto", "return", "unknown"}


def test_a_verdict_map_element_decodes_as_written() -> None:
    body = (
        struct.pack("=BBH", 2, 0, 0)
        + nla(1, b"docker-bridges\0")
        + nla(2, b"filter-forward-in-jumps\0")
        + nested(3, set_element(b"docker0\0" + b"\0" * 8, -3, b"filter-forward-in__docker0\0"))
    )
    parsed = [parse_message(message(NFT_SET_ELEMENTS, body), SET_ELEMENTS)]
    assert _vmap_elements(parsed) == (("docker0", "jump", "filter-forward-in__docker0"),)


# -- "undecoded => unknown, never ok": an expression the decoder does not understand ---------
#
# A rule's decoded fields must be what its expressions say. An expression the decoder does
# not understand (a `ct` key other than state, `fib`, `rt`, a set lookup, ...) may write a
# register that a later compare reads: read as the register's earlier value, the compare
# would give the rule a field it does not have (`ip daddr 172.17.0.2 ct mark 0x1 drop` decoded
# as daddr 0.0.0.1: never matching, the port reading ok). Such an expression poisons what it
# writes, so the rule is undecoded and every verdict it could touch is unknown.

NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
CT_MARK, CT_STATE_KEY = 3, 0


def load(dreg: int, base: int, offset: int, length: int) -> bytes:
    return expression(
        "payload", nla(1, be32(dreg)), nla(2, be32(base)), nla(3, be32(offset)),
        nla(4, be32(length)),
    )  # fmt: skip


def compare(sreg: int, value: bytes, negated: bool = False) -> bytes:
    return expression(
        "cmp", nla(1, be32(sreg)), nla(2, be32(int(negated))), nested(3, nla(1, value))
    )


def meta_load(dreg: int, key: int) -> bytes:
    return expression("meta", nla(1, be32(dreg)), nla(2, be32(key)))


DROP = expression("immediate", nla(1, be32(0)), verdict_data(0, None))
# What the decoder reads, each a load into a register (1, or the 32-bit 8) and its compare.
KNOWN = {
    "daddr 172.17.0.2": lambda r: [load(r, NETWORK_HEADER, 16, 4), compare(r, b"\xac\x11\x00\x02")],
    "daddr 172.17.0.3": lambda r: [load(r, NETWORK_HEADER, 16, 4), compare(r, b"\xac\x11\x00\x03")],
    "saddr 10.0.0.0/8": lambda r: [load(r, NETWORK_HEADER, 12, 1), compare(r, b"\x0a")],
    "tcp": lambda r: [meta_load(r, 16), compare(r, b"\x06")],
    "udp": lambda r: [meta_load(r, 16), compare(r, b"\x11")],
    "dport 80": lambda r: [load(r, TRANSPORT_HEADER, 2, 2), compare(r, b"\x00\x50")],
    "dport 81": lambda r: [load(r, TRANSPORT_HEADER, 2, 2), compare(r, b"\x00\x51")],
    "oifname docker0": lambda r: [meta_load(r, 7), compare(r, b"docker0\0")],
    "iifname != docker0": lambda r: [meta_load(r, 6), compare(r, b"docker0\0", negated=True)],
}  # fmt: skip


def ct_load(dreg: int, key: int) -> bytes:
    return expression("ct", nla(1, be32(dreg)), nla(2, be32(key)))


def field_of(name: str) -> str:
    return {"tcp": "proto", "udp": "proto"}.get(name, name.split(maxsplit=1)[0])


def unknown_writer(kind: str, reg: int) -> bytes:
    if kind == "ct":
        return ct_load(reg, CT_MARK)
    return expression(kind, nla(1, be32(reg)), nla(2, be32(1)))


# An expression the decoder does not understand writing a register, and a compare of that
# register (what the rule really compares is what the expression wrote), or none; or a set
# lookup, which reads a register and writes none.
unknown_parts = st.one_of(
    st.builds(
        lambda kind, reg, value: (
            [unknown_writer(kind, reg)] + ([compare(reg, value)] if value else [])
        ),
        st.sampled_from(["ct", "fib", "rt", "socket", "numgen", "hash", "exthdr", "xfrm"]),
        st.sampled_from([1, 2, 8, 9]),
        st.binary(max_size=16),
    ),
    st.builds(
        lambda reg: [expression("lookup", nla(1, b"allow\0"), nla(2, be32(reg)))],
        st.sampled_from([1, 8]),
    ),
)


def decoded(expressions: list[bytes]) -> FilterRule:
    (msg,) = nft_parse(rule_message(expressions, table=b"filter", chain=b"DOCKER-USER"))
    return decode_filter_rule(
        msg.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [], 2, "filter", "DOCKER-USER", 1
    )


def port_verdict(rule: FilterRule | None) -> str:
    """The forward verdict of Docker 20.10's published 172.17.0.2 tcp/80 with the rule first
    in DOCKER-USER (none: as Docker left it, ok)."""
    from tests.unit.test_filter import CLASSIC, facts  # noqa: PLC0415

    fw = facts(CLASSIC)
    if rule is not None:
        rules = list(fw.filter_rules)
        first = next(n for n, r in enumerate(rules) if r.chain == "DOCKER-USER")
        rules.insert(first, rule)
        fw = replace(fw, filter_rules=tuple(rules))
    return forward_verdict(fw, "ipv4", "172.17.0.2", 80, "tcp", "docker0").state


def test_a_ct_mark_or_fib_after_an_address_is_unknown_not_ok() -> None:
    """issue 22: `ip daddr 172.17.0.2 ct mark 0x1 drop` read ok with undecoded 1."""
    daddr = KNOWN["daddr 172.17.0.2"](1)
    for unknown in (ct_load(1, CT_MARK), expression("fib", nla(1, be32(1)), nla(2, be32(1)))):
        rule = decoded([*daddr, unknown, compare(1, b"\x00\x00\x00\x01"), DROP])
        assert rule.undecoded
        assert rule.destination == "172.17.0.2/32"  # what it says, not the mark's value
        assert port_verdict(rule) == "unknown"
    assert port_verdict(decoded([*daddr, DROP])) == "broken"
    # What the unknown expression cannot touch is still decided: another address.
    other = decoded([*KNOWN["daddr 172.17.0.3"](1), ct_load(1, CT_MARK), compare(1, b"\1"), DROP])
    assert other.destination == "172.17.0.3/32" and port_verdict(other) == "ok"


def test_a_32_bit_register_write_forgets_the_128_bit_register_it_overlaps() -> None:
    """NFT_REG32_00 (8) is the first word of NFT_REG_1: a load there replaces what reg 1 held."""
    rule = decoded([*KNOWN["daddr 172.17.0.3"](1)[:1], meta_load(8, 16), compare(1, b"\1"), DROP])
    assert rule.undecoded and rule.destination is None
    assert port_verdict(rule) == "unknown"


@FUZZ
@given(
    # One match of each kind (two addresses would be a rule that never matches).
    known=st.lists(
        st.tuples(st.sampled_from(sorted(KNOWN)), st.sampled_from([1, 8])),
        max_size=4,
        unique_by=lambda t: field_of(t[0]),
    ),
    unknown=unknown_parts,
    at=st.integers(0, 8),
)
def test_an_expression_not_understood_can_only_make_a_verdict_unknown(
    known: list[tuple[str, int]], unknown: list[bytes], at: int
) -> None:
    """Anywhere in a rule, an expression the decoder does not understand leaves the rule
    undecoded, and the port's verdict with that rule is either what it is without the rule
    (what was decoded rules the packet out, and then the rule without the unknown part does
    too) or unknown: never ok where the understood part alone would block it."""
    parts = [expr for name, reg in known for expr in KNOWN[name](reg)]
    at = min(at, len(parts))
    with_unknown = decoded([*parts[:at], *unknown, *parts[at:], DROP])
    assert with_unknown.undecoded
    understood = decoded([*parts, DROP])
    without = port_verdict(None)
    verdict = port_verdict(with_unknown)
    assert verdict in ("unknown", without)
    if verdict == "ok":
        assert port_verdict(understood) == "ok"


# -- decodings kept across readings (FilterDecodes) -------------------------------------------
#
# A rule whose message is byte for byte the last reading's is not decoded again; its decoding
# must equal a fresh one, wherever the rule has moved in its chain, and a rule that looks a
# set up must see the set's elements of this reading.

NFT_CHAIN = (10 << 8) | 3  # NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWCHAIN
CHAIN_NAMES = [b"FORWARD", b"A", b"B"]


def chain_message(name: bytes, hook: bool) -> bytes:
    body = struct.pack("=BBH", 2, 0, 0) + nla(1, b"filter\0") + nla(3, name + b"\0")
    if hook:  # NFTA_CHAIN_HOOK { hooknum forward, priority 0 }, type filter
        body += nested(4, nla(1, be32(2)), nla(2, be32(0))) + nla(7, b"filter\0")
    return message(NFT_CHAIN, body)


def with_handle(data: bytes, handle: int) -> bytes:
    extra = nla(3, struct.pack(">Q", handle))  # NFTA_RULE_HANDLE
    return HEADER.pack(len(data) + len(extra), *HEADER.unpack_from(data)[1:]) + data[16:] + extra


class VerdictMapDump:
    """What NftSocket.set_elements gives for the map "m": the kernel's element messages, parsed
    by the reader's own schema. Each reading may answer with other elements."""

    def __init__(self) -> None:
        self.chain = b"A"

    def set_elements(self, family: int, table: str, name: str) -> list[Any]:
        body = (
            struct.pack("=BBH", 2, 0, 0)
            + nla(1, table.encode() + b"\0")
            + nla(2, name.encode() + b"\0")
            + nested(3, set_element(b"docker0\0", -3, self.chain + b"\0"))
        )
        return [parse_message(message(NFT_SET_ELEMENTS, body), SET_ELEMENTS)]


# `meta oifname vmap @m`: the rule's verdict is the element's, which each reading may change.
VMAP_RULE = [
    expression("meta", nla(1, be32(1)), nla(2, be32(7))),  # oifname into register 1
    expression("lookup", nla(1, b"m\0"), nla(2, be32(1)), nla(3, be32(0))),
]
kept_rules = st.lists(
    st.tuples(st.sampled_from(CHAIN_NAMES), filter_expressions | st.just(VMAP_RULE)),
    max_size=12,
)


@FUZZ
@given(readings=st.lists(st.tuples(kept_rules, st.sampled_from([b"A", b"B"])), min_size=2))
def test_kept_filter_decodings_equal_fresh_ones_reading_after_reading(
    readings: list[tuple[list[tuple[bytes, list[bytes]]], bytes]],
) -> None:
    chains = [parse_message(chain_message(name, name == b"FORWARD"), CHAIN) for name in CHAIN_NAMES]
    sock = VerdictMapDump()
    parses, decodes = RuleParses(), FilterDecodes()
    every_rule = [r for rules, _ in readings for r in rules]
    handles = {r: i for i, r in enumerate(dict.fromkeys((c, tuple(e)) for c, e in every_rule))}
    for rules, jumps_to in readings:
        sock.chain = jumps_to
        data = [
            with_handle(rule_message(e, table=b"filter", chain=c), handles[(c, tuple(e))])
            for c, e in rules
        ]
        try:
            fresh = [parse_message(d, RULE) for d in data]
        except NetlinkError:
            continue
        kept = parses.parse(2, iter(data))
        got = nft_filter(sock, chains, kept, 2, decodes=decodes)  # type: ignore[arg-type]
        assert got == nft_filter(sock, chains, fresh, 2)  # type: ignore[arg-type]


def test_a_kept_rule_is_not_decoded_again_and_keeps_its_place_in_its_chain() -> None:
    chains = [parse_message(chain_message(b"FORWARD", True), CHAIN)]
    accept = expression("immediate", nla(1, be32(0)), verdict_data(1, None))
    drop = expression("immediate", nla(1, be32(0)), verdict_data(0, None))
    a = with_handle(rule_message([accept], table=b"filter", chain=b"FORWARD"), 1)
    b = with_handle(rule_message([drop], table=b"filter", chain=b"FORWARD"), 2)
    parses, decodes = RuleParses(), FilterDecodes()
    first = nft_filter(None, chains, parses.parse(2, iter([a, b])), 2, decodes=decodes)  # type: ignore[arg-type]
    assert [r.verdict for r in first.rules] == ["accept", "drop"]
    # Unchanged: the very records of the last reading, not decoded again.
    second = nft_filter(None, chains, parses.parse(2, iter([a, b])), 2, decodes=decodes)  # type: ignore[arg-type]
    assert all(x is y for x, y in zip(second.rules, first.rules, strict=True))
    # a is gone: b keeps its decoding, at position 1 now, and a is forgotten.
    third = nft_filter(None, chains, parses.parse(2, iter([b])), 2, decodes=decodes)  # type: ignore[arg-type]
    assert third.rules == (replace(first.rules[1], position=1),)
    assert list(decodes.last[(2, 2)].values()) == [third.rules[0]]
