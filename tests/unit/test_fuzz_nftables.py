"""Hostile input into the nf_tables decoder: rule messages built with struct and parsed by
pyroute2's marshal, as read_nftables gets them, with odd registers, payload offsets and
lengths, data lengths and target infos: valid facts or nothing."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st

from exporter.readers.nat_rules import _rule, decode_expressions
from exporter.readers.netlink import (
    NetlinkError,
)
from exporter.readers.nfnetlink import RULE, parse_message
from tests.fuzzing import FUZZ, HEADER, NLA_F_NESTED, message, mutated, nla, u32

NFT_RULE = (10 << 8) | 6  # NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWRULE


# linux/netfilter/nf_tables.h, enum nft_meta_keys
IIFNAME, OIFNAME, L4PROTO = 6, 7, 16


def be32(value: int) -> bytes:
    return struct.pack(">I", value)


def be64(value: int) -> bytes:
    return struct.pack(">Q", value)


def nested(kind: int, *attrs: bytes) -> bytes:
    return nla(kind | NLA_F_NESTED, b"".join(attrs))


def data_value(value: bytes) -> bytes:
    return nla(1, value)  # NFTA_DATA_VALUE


def expression(name: str, *attrs: bytes) -> bytes:
    return nested(1, nla(1, name.encode() + b"\0"), nested(2, *attrs))  # NFTA_LIST_ELEM


def rule_message(expressions: Iterable[bytes], table: bytes = b"nat", chain: bytes = b"C") -> bytes:
    body = (
        struct.pack("=BBH", 2, 0, 0)  # nfgenmsg: NFPROTO_IPV4
        + nla(1, table + b"\0")
        + nla(2, chain + b"\0")
        + nested(4, *expressions)  # NFTA_RULE_EXPRESSIONS
    )
    return message(NFT_RULE, body)


def nft_parse(data: bytes) -> list[Any]:
    """What read_nftables gets for one rule message: parsed, or refused with NetlinkError (an
    OSError, which read_nftables reports as the backend unreadable)."""
    try:
        return [parse_message(data, RULE)]
    except NetlinkError:
        return []


# iptables-nft's shapes (`iptables -t nat -S` after dockerd): payload/meta into a register,
# cmp against it, an xtables target with a binary info struct.
def ip_source(prefix: bytes, length: int) -> list[bytes]:
    return [
        expression(
            "payload", nla(1, be32(1)), nla(2, be32(1)), nla(3, be32(12)), nla(4, be32(length))
        ),
        expression("cmp", nla(1, be32(1)), nla(2, be32(0)), nested(3, data_value(prefix))),
    ]


def interface(meta_key: int, name: bytes, negated: bool) -> list[bytes]:
    return [
        expression("meta", nla(1, be32(1)), nla(2, be32(meta_key))),
        expression("cmp", nla(1, be32(1)), nla(2, be32(int(negated))), nested(3, data_value(name))),
    ]


def tcp_dport(port: int) -> list[bytes]:
    return [
        expression("meta", nla(1, be32(1)), nla(2, be32(L4PROTO))),
        expression("cmp", nla(1, be32(1)), nla(2, be32(0)), nested(3, data_value(b"\x06"))),
        expression("payload", nla(1, be32(1)), nla(2, be32(2)), nla(3, be32(2)), nla(4, be32(2))),
        expression("cmp", nla(1, be32(1)), nla(2, be32(0)),
                   nested(3, data_value(struct.pack(">H", port)))),
    ]  # fmt: skip


def dnat_target(address: bytes, port: int) -> bytes:
    info = struct.pack("=I", 3) + address.ljust(16, b"\0") * 2 + struct.pack(">HHH", port, port, 0)
    return expression("target", nla(1, b"DNAT\0"), nla(2, be32(2)), nla(3, info + b"\0\0"))


MASQUERADE = [
    *ip_source(b"\xac\x11", 2),
    *interface(OIFNAME, b"docker0\0", True),
    expression("counter", nla(1, be64(1500)), nla(2, be64(12))),
    expression("target", nla(1, b"MASQUERADE\0"), nla(2, be32(0)), nla(3, b"\0" * 8)),
]


DNAT = [
    *interface(IIFNAME, b"docker0\0", True),
    *tcp_dport(8080),
    dnat_target(b"\xac\x11\x00\x02", 80),
]


# nft's native dnat (`dnat to 172.17.0.2:80`): immediates into registers, then nat.
NATIVE_DNAT = [
    *tcp_dport(8080),
    expression("immediate", nla(1, be32(1)), nested(2, data_value(b"\xac\x11\x00\x02"))),
    expression("immediate", nla(1, be32(2)), nested(2, data_value(b"\x00\x50"))),
    expression("nat", nla(1, be32(1)), nla(2, be32(2)), nla(3, be32(1)), nla(5, be32(2))),
]


MASQUERADED = dict(
    action="masquerade", source="172.17.0.0/16", out_interface="docker0", out_negated=True
)


FORWARDED = dict(protocol="tcp", dport=8080, to_address="172.17.0.2", to_port=80)


SHAPES = [
    (MASQUERADE, MASQUERADED),
    (DNAT, dict(action="dnat", in_interface="docker0", in_negated=True, **FORWARDED)),
    (NATIVE_DNAT, dict(action="dnat", in_interface=None, **FORWARDED)),
]


# Expressions that say nothing the decoder reads, as iptables-nft and Docker write them: they
# write no register the rule's compares read (fib writes register 3).
INERT = [
    expression("lookup", nla(1, b"set\0"), nla(2, be32(1))),
    expression("match", nla(1, b"addrtype\0"), nla(2, be32(1)), nla(3, b"\0" * 4)),
    expression("fib", nla(1, be32(3)), nla(2, be32(3))),
]
# An expression of no known kind may write any register: between a load and its compare it
# leaves the field unknown (None), never the value of another field.
UNKNOWN = expression("xt", nla(1, b"?\0"))


@FUZZ
@given(
    shape=st.sampled_from(SHAPES),
    inert=st.lists(st.tuples(st.integers(0, 20), st.sampled_from(INERT)), max_size=4),
)
def test_docker_rules_decode_with_unrelated_expressions_between(
    shape: tuple[list[bytes], dict[str, object]], inert: list[tuple[int, bytes]]
) -> None:
    expressions, expected = shape
    mixed = list(expressions)
    for at, expr in inert:
        mixed.insert(at, expr)
    (msg,) = nft_parse(rule_message(mixed))
    decoded = decode_expressions(msg.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [])
    for key, value in expected.items():
        assert getattr(decoded, key) == value, key


@FUZZ
@given(shape=st.sampled_from(SHAPES), at=st.integers(0, 20))
def test_an_unknown_expression_leaves_fields_unknown_never_wrong(
    shape: tuple[list[bytes], dict[str, object]], at: int
) -> None:
    expressions, expected = shape
    mixed = list(expressions)
    mixed.insert(at, UNKNOWN)
    (msg,) = nft_parse(rule_message(mixed))
    decoded = decode_expressions(msg.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [])
    for key, value in expected.items():
        assert getattr(decoded, key) in (value, None, False), key


REGISTERS = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 8, 9, 22]), u32).map(be32)


garbage = st.binary(max_size=12)


def attr(kind: int, good: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """An attribute with a plausible value, with bytes of any length, or absent."""
    return st.one_of(
        good.map(lambda v: nla(kind, v)),
        garbage.map(lambda v: nla(kind, v)),
        st.just(b""),
    )


def data_attr(kind: int) -> st.SearchStrategy[bytes]:
    values = st.one_of(
        st.binary(max_size=20),
        st.sampled_from([b"", b"\x06", b"\x11", b"\xac\x11", b"\x1f\x90", b"docker0\0", b"br-"]),
        st.binary(max_size=4).map(lambda v: v + 'ünï✓\n"\\'.encode()),
    )
    return st.one_of(
        values.map(lambda v: nested(kind, data_value(v))),
        garbage.map(lambda v: nested(kind, nla(2, v))),  # a verdict, not a value
        garbage.map(lambda v: nla(kind, v)),
        st.just(b""),
    )


def expr_of(name: str, *attrs: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(*attrs).flatmap(st.permutations).map(lambda a: expression(name, *a))


OFFSETS = st.one_of(st.sampled_from([0, 2, 9, 12, 16, 20]), u32).map(be32)


LENGTHS = st.one_of(st.integers(0, 20), u32).map(be32)


BASES = st.one_of(st.integers(0, 3), u32).map(be32)


META_KEYS = st.one_of(st.sampled_from([OIFNAME, IIFNAME, L4PROTO]), u32).map(be32)


OPS = st.one_of(st.integers(0, 6), u32).map(be32)


TARGET_INFO = st.one_of(
    st.binary(max_size=48),
    st.tuples(u32, st.binary(min_size=36, max_size=40)).map(
        lambda t: struct.pack("=I", t[0]) + t[1]
    ),
)


hostile_expressions = st.lists(
    st.one_of(
        expr_of("payload", attr(1, REGISTERS), attr(2, BASES), attr(3, OFFSETS), attr(4, LENGTHS)),
        expr_of("meta", attr(1, REGISTERS), attr(2, META_KEYS)),
        expr_of("cmp", attr(1, REGISTERS), attr(2, OPS), data_attr(3)),
        expr_of("bitwise", attr(1, REGISTERS), attr(2, REGISTERS), attr(3, LENGTHS), data_attr(4)),
        expr_of("immediate", attr(1, REGISTERS), data_attr(2)),
        expr_of("counter", attr(1, u32.map(be64)), attr(2, u32.map(be64))),
        expr_of(
            "target",
            attr(1, st.sampled_from([b"DNAT\0", b"MASQUERADE\0", b"SNAT\0", b"DNAT"])),
            attr(2, st.integers(0, 3).map(be32)),
            attr(3, TARGET_INFO),
        ),
        expr_of("masq", attr(1, u32.map(be32))),
        expr_of(
            "nat",
            attr(1, st.integers(0, 2).map(be32)),
            attr(2, st.integers(0, 10).map(be32)),
            attr(3, REGISTERS),
            attr(5, REGISTERS),
        ),
        st.sampled_from(INERT),
        st.binary(max_size=24).map(lambda b: expression("payload", b)),
        st.binary(max_size=24).map(lambda b: nla(1, b)),
    ),
    max_size=10,
)


@FUZZ
@given(
    expressions=st.one_of(hostile_expressions, hostile_expressions.map(lambda e: [*MASQUERADE, *e]))
)
@example(
    expressions=[  # ip protocol compared against nothing
        expression("payload", nla(1, be32(1)), nla(2, be32(1)), nla(3, be32(9)), nla(4, be32(1))),
        expression("cmp", nla(1, be32(1)), nla(2, be32(0)), nested(3, data_value(b""))),
        expression("masq"),
    ]
)
@example(
    expressions=[  # a source address compared with 16 bytes of registers
        *ip_source(b"\xac\x11" * 8, 4),
        expression("masq"),
    ]
)
@example(
    expressions=[  # a payload load without a length
        expression("payload", nla(1, be32(1)), nla(2, be32(1)), nla(3, be32(12))),
        expression("cmp", nla(1, be32(1)), nla(2, be32(0)), nested(3, data_value(b"\xac\x11"))),
        expression("masq"),
    ]
)
@example(
    expressions=[  # a port compared with 4 bytes
        *tcp_dport(0)[:3],
        expression("cmp", nla(1, be32(1)), nla(2, be32(0)), nested(3, data_value(b"\xff" * 4))),
        expression("masq"),
    ]
)
@example(expressions=[  # a mask of 16 bytes: more than 32 prefix bits
    expression("payload", nla(1, be32(1)), nla(2, be32(1)), nla(3, be32(12)), nla(4, be32(4))),
    expression("bitwise", nla(1, be32(1)), nla(2, be32(1)), nla(3, be32(4)),
               nested(4, data_value(b"\xff" * 16))),
    expression("cmp", nla(1, be32(1)), nla(2, be32(0)), nested(3, data_value(b"\xac\x11\0\0"))),
    expression("masq"),
])  # fmt: skip
def test_hostile_rules_decode_to_valid_facts_or_nothing(expressions: list[bytes]) -> None:
    decodes_or_skips(rule_message(expressions))


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=80),
        mutated(
            st.sampled_from(
                [rule_message(MASQUERADE), rule_message(DNAT), rule_message(NATIVE_DNAT)]
            ),
            start=HEADER.size + 4,
        ),
    )
)
def test_mutated_rule_messages_are_refused_or_decoded(data: bytes) -> None:
    decodes_or_skips(data)


def decodes_or_skips(data: bytes) -> None:
    """A rule message is refused (NetlinkError: the backend reported unreadable), or decoded to
    facts an exposition can hold, or skipped (no action)."""
    for msg in nft_parse(data):
        decoded = decode_expressions(msg.attrs.get_attr("NFTA_RULE_EXPRESSIONS") or [])
        assert decoded.action in (None, "masquerade", "dnat")
        event(f"action {decoded.action}, source {decoded.source is not None}")
        if decoded.action is None:
            continue  # skipped, as read_nftables skips it
        rule = _rule("nftables", "nat", "C", decoded)
        for cidr in (rule.source, rule.destination):
            assert cidr is None or str(ipaddress.IPv4Network(cidr)) == cidr
        if rule.to_address is not None:
            ipaddress.IPv4Address(rule.to_address)
        for port in (rule.dport, rule.to_port):
            assert port is None or 0 <= port <= 0xFFFF
        for name in (rule.in_interface, rule.out_interface, rule.protocol):
            assert name is None or isinstance(name, str)
        assert decoded.packets >= 0 and decoded.bytes >= 0
