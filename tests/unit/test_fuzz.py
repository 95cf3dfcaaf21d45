"""Hostile input into the decoders: never a crash, always a valid exposition (no root, no engine).

- rtnetlink: RTM_NEWLINK / NLMSG_ERROR / RTM_NEWNSID bytes built with struct, mutated (truncated,
  lengths rewritten, bytes overwritten) and arbitrary; plus every link this host's kernel lists
  (an RTM_GETLINK dump needs no privilege), checked against pyroute2's own decoder.
- nf_tables: rule messages built with struct and parsed by pyroute2's marshal, as read_nftables
  gets them, with odd registers, payload offsets and lengths, data lengths and target infos.
- exposition: container, image, network, link, chain and interface names with quotes,
  backslashes, newlines, NUL, non-ASCII and very long strings, rendered through every writer;
  the text must parse and give back every label value exactly, and pass promtool.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import itertools
import json
import random
import socket
import struct
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from exporter.collectors import all_collectors
from exporter.facts import (
    ContainerLayer,
    ContainerRecord,
    DockerNetwork,
    EngineFacts,
    FirewallBackend,
    ImageFacts,
    LayerFacts,
    LayersFacts,
    Link,
    LinkCounters,
    NatExpectations,
    NatFacts,
    NatRule,
    NetworkFacts,
    PublishedPort,
)
from exporter.metrics import render
from exporter.readers import iptables
from exporter.readers.docker_api import container_record, docker_network, engine_components
from exporter.readers.netfilter import _interface, _rule, decode_expressions, decode_nat_target
from exporter.readers.netlink import (
    IFLA,
    IFLA_BR,
    IFLA_BRPORT,
    IFLA_INFO,
    NETNSA,
    OPERSTATES,
    PORT_STATES,
    STATS64_FIELDS,
    NetlinkError,
    _error,
    _find,
    _i32,
    _split,
    _text,
    parse_link,
)
from exporter.readers.nfnetlink import NFPROTO_IPV6, RULE, parse_message
from exporter.report import snapshot_from_json
from exporter.selfmetrics import write_self_metrics
from exporter.snapshot import CollectorState, Snapshot
from tests.conftest import FIXTURES
from tests.helpers import Sample, parse

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- rtnetlink ------------------------------------------------------------------------------

RTM_NEWLINK = 16
RTM_NEWNSID = 88
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
HEADER = struct.Struct("=IHHII")
IFINFO = struct.Struct("=BxHiII")
ATTRS_START = HEADER.size + IFINFO.size


def nla(kind: int, payload: bytes, declared: int | None = None) -> bytes:
    """One attribute, padded to 4; `declared` overrides the length field (a lying length)."""
    length = 4 + len(payload)
    header = struct.pack("=HH", length if declared is None else declared, kind)
    return header + payload + b"\0" * ((-length) % 4)


def message(msg_type: int, body: bytes, flags: int = 2, seq: int = 1) -> bytes:
    return HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body


def link_message(index: int, attrs: Iterable[bytes]) -> bytes:
    return message(RTM_NEWLINK, IFINFO.pack(0, 1, index, 0, 0) + b"".join(attrs))


@dataclasses.dataclass(frozen=True)
class LinkSpec:
    """What a generated RTM_NEWLINK says, and so what parse_link must return."""

    index: int
    name: str
    kind: str | None
    slave_kind: str | None
    port_state: int | None
    stp_state: int | None
    master: int | None
    link: int | None
    netnsid: int | None
    operstate: int | None
    stats: tuple[int, ...] | None
    nested_flag: bool

    def attributes(self, noise: Sequence[bytes]) -> list[bytes]:
        nested = NLA_F_NESTED if self.nested_flag else 0
        top: list[bytes] = [nla(IFLA["IFLA_IFNAME"], self.name.encode() + b"\0"), *noise]
        info: list[bytes] = []
        if self.kind is not None:
            info.append(nla(IFLA_INFO["IFLA_INFO_KIND"], self.kind.encode() + b"\0"))
            if self.stp_state is not None:
                data = nla(IFLA_BR["IFLA_BR_STP_STATE"], struct.pack("=I", self.stp_state))
                info.append(nla(IFLA_INFO["IFLA_INFO_DATA"] | nested, data))
        if self.slave_kind is not None:
            info.append(nla(IFLA_INFO["IFLA_INFO_SLAVE_KIND"], self.slave_kind.encode() + b"\0"))
            if self.port_state is not None:
                state = nla(IFLA_BRPORT["IFLA_BRPORT_STATE"], bytes([self.port_state]))
                info.append(nla(IFLA_INFO["IFLA_INFO_SLAVE_DATA"] | nested, state))
        if info:
            top.append(nla(IFLA["IFLA_LINKINFO"] | nested, b"".join(info)))
        for key, value, fmt in (
            ("IFLA_MASTER", self.master, "=I"),
            ("IFLA_LINK", self.link, "=i"),
            ("IFLA_LINK_NETNSID", self.netnsid, "=i"),
        ):
            if value is not None:
                top.append(nla(IFLA[key], struct.pack(fmt, value)))
        if self.operstate is not None:
            top.append(nla(IFLA["IFLA_OPERSTATE"], bytes([self.operstate])))
        if self.stats is not None:
            top.append(nla(IFLA["IFLA_STATS64"], struct.pack(f"={len(self.stats)}Q", *self.stats)))
        return top

    def expected(self) -> Link:
        counters = None
        if self.stats is not None:
            named = dict(zip(STATS64_FIELDS, self.stats, strict=False))
            counters = LinkCounters(
                *(named[f.name] for f in dataclasses.fields(LinkCounters))  # same names
            )
        port_state = None
        if self.slave_kind == "bridge" and self.port_state is not None:
            code = self.port_state
            port_state = PORT_STATES[code] if code < len(PORT_STATES) else str(code)
        stp = None
        if self.kind == "bridge" and self.stp_state is not None:
            stp = self.stp_state != 0
        operstate = "unknown"
        if self.operstate is not None:
            code = self.operstate
            operstate = OPERSTATES[code] if code < len(OPERSTATES) else str(code)
        return Link(
            index=self.index,
            name=self.name,
            kind=self.kind or "",
            master=self.master,
            peer_index=self.link if self.link not in (None, 0, self.index) else None,
            peer_nsid=self.netnsid,
            operstate=operstate,
            port_state=port_state,
            stp_enabled=stp,
            counters=counters,
        )


USED_TYPES = {
    IFLA[k]
    for k in (
        "IFLA_IFNAME",
        "IFLA_LINKINFO",
        "IFLA_MASTER",
        "IFLA_LINK",
        "IFLA_LINK_NETNSID",
        "IFLA_OPERSTATE",
        "IFLA_STATS64",
    )
}
u32 = st.integers(0, 2**32 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
# Names as the kernel would never give them: anything but NUL, encoded as UTF-8.
label_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)
link_specs = st.builds(
    LinkSpec,
    index=i32,
    name=label_text,
    kind=st.one_of(st.none(), st.sampled_from(["", "veth", "bridge", "dummy"]), label_text),
    slave_kind=st.one_of(st.none(), st.sampled_from(["bridge", "bond"]), label_text),
    port_state=st.one_of(st.none(), st.integers(0, 255)),
    stp_state=st.one_of(st.none(), u32),
    master=st.one_of(st.none(), u32),
    link=st.one_of(st.none(), i32),
    netnsid=st.one_of(st.none(), i32),
    operstate=st.one_of(st.none(), st.integers(0, 255)),
    # IFLA_STATS64 grew over the years (23 fields, then 24, 25): any length that holds the
    # eight counters read.
    stats=st.one_of(
        st.none(),
        st.integers(8, 26).flatmap(
            lambda n: st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n).map(tuple)
        ),
    ),
    nested_flag=st.booleans(),
)
# Attributes the parser does not read (IFLA_MTU, IFLA_AF_SPEC, ... and numbers nobody defined).
noise_attrs = st.lists(
    st.builds(
        nla,
        st.integers(0, 0x3FFF).filter(lambda t: t not in USED_TYPES),
        st.binary(max_size=40),
    ),
    max_size=4,
)


@FUZZ
@given(spec=link_specs, noise=noise_attrs, order=st.randoms(use_true_random=False))
def test_well_formed_links_parse_to_exactly_what_they_say(
    spec: LinkSpec, noise: list[bytes], order: random.Random
) -> None:
    attrs = spec.attributes(noise)
    order.shuffle(attrs)  # attribute order is not part of the protocol
    assert parse_link(link_message(spec.index, attrs)) == spec.expected()


def seeds() -> list[bytes]:
    """Messages worth mutating: a veth on a bridge, a bridge, a host link with stats."""
    port = LinkSpec(7, "veth1a2b3c", "veth", "bridge", 3, None, 4, 2, 0, 6, (1,) * 24, False)
    bridge = LinkSpec(4, "docker0", "bridge", None, None, 0, None, None, None, 2, None, True)
    plain = LinkSpec(1, "lo", None, None, None, None, None, None, None, None, (5,) * 23, False)
    return [link_message(s.index, s.attributes([])) for s in (port, bridge, plain)]


def attribute_offsets(data: bytes, start: int, end: int, depth: int = 0) -> list[int]:
    """Where the length fields of a message's attributes are, nested ones included."""
    found: list[int] = []
    offset = start
    while offset + 4 <= end:
        length, _ = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found.append(offset)
        if depth < 3 and length > 8:
            found += attribute_offsets(data, offset + 4, min(offset + length, end), depth + 1)
        offset += (length + 3) & ~3
    return found


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes], start: int = ATTRS_START) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["truncate", "length", "header", "overwrite", "append"]))
        if how == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif how == "length":
            offsets = attribute_offsets(bytes(data), start, len(data))
            if offsets:
                at = draw(st.sampled_from(offsets))
                lie = st.sampled_from([0, 1, 3, 4, 5, 7, 8, 0xFFFF, len(data)])
                struct.pack_into("=H", data, at, draw(st.one_of(lie, st.integers(0, 0xFFFF))))
        elif how == "header" and len(data) >= 4:
            lie = st.sampled_from([0, 1, 15, 16, 31, 32, len(data) + 1, 2**32 - 1])
            struct.pack_into("=I", data, 0, draw(st.one_of(lie, u32)))
        elif how == "overwrite" and data:
            at = draw(st.integers(0, len(data) - 1))
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
        else:
            data += draw(st.binary(max_size=16))
    return bytes(data)


generated_links = st.builds(
    lambda spec, noise: link_message(spec.index, spec.attributes(noise)), link_specs, noise_attrs
)
hostile_link_bytes = st.one_of(
    st.binary(max_size=200),
    mutated(st.sampled_from(seeds())),
    mutated(generated_links),
    mutated(st.deferred(lambda: st.sampled_from(host_link_messages()))),
)


def parses_or_refuses(parse: Callable[[], object]) -> object | None:
    """The decoder's contract: a result, or its own error; nothing else may escape."""
    try:
        return parse()
    except NetlinkError:
        return None


@FUZZ
@given(data=hostile_link_bytes)
@example(data=link_message(3, [nla(IFLA["IFLA_OPERSTATE"], b"\x07")]))  # an operstate unknown
@example(data=link_message(3, [nla(IFLA["IFLA_STATS64"], b"\0" * 16)]))  # stats cut short
@example(data=link_message(3, [nla(IFLA["IFLA_MASTER"], b"\1\0")]))  # u32 with 2 bytes
@example(data=link_message(3, [nla(IFLA["IFLA_IFNAME"], b"eth0\0", declared=200)]))
@example(data=message(RTM_NEWLINK, b"\0" * 6))  # ifinfomsg truncated
def test_hostile_link_messages_parse_or_raise_netlink_error(data: bytes) -> None:
    link = parses_or_refuses(lambda: parse_link(data))
    event("parsed" if link is not None else "refused")
    if link is None:
        return
    assert isinstance(link, Link)
    assert isinstance(link.name, str) and "\0" not in link.name
    assert isinstance(link.operstate, str)
    if link.counters is not None:
        assert all(0 <= v < 2**64 for v in dataclasses.astuple(link.counters))


def test_short_attribute_is_refused_not_read_from_its_neighbour() -> None:
    # A 2-byte IFLA_MASTER followed by IFLA_LINK: reading 4 bytes would take half of the
    # next attribute's header as the master's ifindex.
    data = link_message(
        3, [nla(IFLA["IFLA_MASTER"], b"\x05\x00"), nla(IFLA["IFLA_LINK"], b"\x09\0\0\0")]
    )
    with pytest.raises(NetlinkError):
        parse_link(data)


@FUZZ
@given(
    datagram=st.one_of(
        st.binary(max_size=120),
        st.lists(st.one_of(generated_links, mutated(st.sampled_from(seeds()))), max_size=3).map(
            lambda ms: b"".join(m + b"\0" * ((-len(m)) % 4) for m in ms)
        ),
    )
)
@example(datagram=HEADER.pack(0, RTM_NEWLINK, 2, 1, 0))  # a zero length: must not spin
@example(datagram=HEADER.pack(8, RTM_NEWLINK, 2, 1, 0) + b"\0" * 16)  # shorter than a header
@example(datagram=HEADER.pack(64, RTM_NEWLINK, 2, 1, 0))  # longer than the datagram
def test_datagram_splitting_terminates_and_yields_whole_messages(datagram: bytes) -> None:
    # A bound on the iteration, so a parser that loops forever fails here instead of hanging.
    bound = len(datagram) // HEADER.size + 1
    messages = parses_or_refuses(lambda: list(itertools.islice(_split(datagram), bound + 1)))
    if messages is None:
        return
    assert isinstance(messages, list)
    assert len(messages) <= len(datagram) // HEADER.size
    for _, _, _, one in messages:
        assert len(one) >= HEADER.size
        assert HEADER.unpack_from(one)[0] == len(one)  # not cut short by the datagram's end


@FUZZ
@given(
    code=st.one_of(st.sampled_from([0, -1, -19, -22, 5, -(2**31)]), i32),
    cut=st.integers(0, 40),
)
@example(code=-1, cut=HEADER.size)  # the errno itself missing
@example(code=-(2**31), cut=40)  # no errno: os.strerror(2**31) overflowed
def test_error_messages_decode_or_refuse(code: int, cut: int) -> None:
    full = message(NLMSG_ERROR, struct.pack("=i", code) + HEADER.pack(20, 18, 1, 1, 0))
    data = full[:cut] if cut < len(full) else full
    try:
        error = _error(data)
    except NetlinkError:
        assert len(data) < HEADER.size + 4
        return
    if len(data) < HEADER.size + 4:
        # Too short to hold an errno: an error it must be, never an acknowledgement.
        assert isinstance(error, NetlinkError)
        return
    if code == 0:
        assert error is None
    else:
        assert isinstance(error, NetlinkError)
        # -errno, or a value no kernel sends: reported as a malformed message.
        assert error.errno == (-code if -4096 < code < 0 else errno.EBADMSG)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=64),
        mutated(st.sampled_from(seeds())),
        mutated(
            i32.map(
                lambda nsid: message(
                    RTM_NEWNSID, b"\0" * 4 + nla(NETNSA["NETNSA_NSID"], struct.pack("=i", nsid))
                )
            )
        ),
    )
)
def test_single_answers_name_and_nsid_lookups_never_crash(data: bytes) -> None:
    """What link_names and nsids_of read out of each answer."""
    name = parses_or_refuses(lambda: _text(data, _find(data, ATTRS_START, IFLA["IFLA_IFNAME"])))
    assert name is None or isinstance(name, str)
    nsid = parses_or_refuses(
        lambda: _i32(data, _find(data, HEADER.size + 4, NETNSA["NETNSA_NSID"]))
    )
    assert nsid is None or isinstance(nsid, int)


_HOST_LINKS: list[bytes] = []


def host_link_messages() -> list[bytes]:
    """Every RTM_NEWLINK this host's kernel answers a dump with, as raw bytes. An RTM_GETLINK
    dump of one's own namespace needs no privilege."""
    if _HOST_LINKS:
        return _HOST_LINKS
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.settimeout(5)
        sock.send(message(18, IFINFO.pack(0, 0, 0, 0, 0), flags=0x301))  # REQUEST | DUMP
        while True:
            datagram, offset = sock.recv(1 << 20), 0
            while offset + HEADER.size <= len(datagram):
                length, kind = struct.unpack_from("=IH", datagram, offset)
                if kind == 3:  # NLMSG_DONE
                    return _HOST_LINKS
                assert kind == RTM_NEWLINK, kind
                _HOST_LINKS.append(datagram[offset : offset + length])
                offset += (length + 3) & ~3


def test_every_link_on_this_host_parses_as_pyroute2_reads_it() -> None:
    messages = host_link_messages()
    assert any(parse_link(m).name == "lo" for m in messages)
    for data in messages:
        link = parse_link(data)
        theirs = ifinfmsg(data)
        theirs.decode()
        assert link.index == theirs["index"]
        assert link.name == theirs.get_attr("IFLA_IFNAME")
        assert link.kind == (theirs.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "")
        assert link.master == theirs.get_attr("IFLA_MASTER")
        assert link.peer_nsid == theirs.get_attr("IFLA_LINK_NETNSID")
        peer = theirs.get_attr("IFLA_LINK")
        assert link.peer_index == (peer if peer not in (None, 0, link.index) else None)
        assert link.operstate == (theirs.get_attr("IFLA_OPERSTATE") or "unknown").lower()
        stats = theirs.get_attr("IFLA_STATS64")
        if stats is None:
            assert link.counters is None
        else:
            assert link.counters is not None
            for f in dataclasses.fields(LinkCounters):
                assert getattr(link.counters, f.name) == stats[f.name]
        state = theirs.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_STATE")
        if theirs.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND") == "bridge":
            assert link.port_state == (None if state is None else PORT_STATES[state])
        stp = theirs.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_STP_STATE")
        if link.kind == "bridge":
            assert link.stp_enabled == (None if stp is None else stp != 0)


# -- nf_tables ------------------------------------------------------------------------------

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
# Expressions that say nothing the decoder reads, as iptables-nft and Docker write them.
INERT = [
    expression("lookup", nla(1, b"set\0"), nla(2, be32(1))),
    expression("match", nla(1, b"addrtype\0"), nla(2, be32(1)), nla(3, b"\0" * 4)),
    expression("fib", nla(1, be32(3)), nla(2, be32(3))),
    expression("xt", nla(1, b"?\0")),
]


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
        assert rule.packets >= 0 and rule.bytes >= 0


# -- exposition -----------------------------------------------------------------------------

NASTY = [
    '"',
    "\\",
    "\n",
    "\\n",
    '\\"',
    '"\\',
    '\\\\\n"',
    "\0",
    "\r",
    "\r\n",
    "\t",
    "\x7f\x1b[31m",
    "\u2028\u0085",
    "\ufeff",
    "ünïcödé ✓ 🐳",
    "}",
    '{a="b"}',
    "=,",
    " ",
    "# HELP x y",
    "x" * 5000,
]
hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=4).map("".join),
)
WRITERS = (*(c.write for c in all_collectors()), write_self_metrics)


def recorded() -> Snapshot:
    return snapshot_from_json((FIXTURES / "host-snapshot.json").read_text(), all_collectors())


def samples(text: bytes) -> Counter[tuple[str, frozenset[tuple[str, str]], float]]:
    return Counter((s.name, frozenset(s.labels.items()), s.value) for s in parse(text))


def renamed(
    found: Iterable[Sample], maps: Mapping[str, Mapping[str, str]]
) -> Counter[tuple[str, frozenset[tuple[str, str]], float]]:
    return Counter(
        (s.name, frozenset((k, maps.get(k, {}).get(v, v)) for k, v in s.labels.items()), s.value)
        for s in found
    )


def with_facts(snapshot: Snapshot, name: str, facts: object) -> Snapshot:
    return snapshot.with_state(dataclasses.replace(snapshot.collectors[name], facts=facts))


Fresh = Callable[[int], list[str]]  # n distinct strings


def renaming(fresh: Fresh, old: Iterable[str]) -> dict[str, str]:
    distinct = sorted(set(old))
    return dict(zip(distinct, fresh(len(distinct)), strict=True))


def hostile_host(fresh: Fresh) -> tuple[Snapshot, dict[str, dict[str, str]]]:
    """The recorded host with every container, image, network, component version, link and
    peer interface renamed: the joins are the same, only the strings are hostile."""
    base = recorded()
    engine = base.current("containers", EngineFacts)
    net = base.current("network", NetworkFacts)
    assert engine is not None and net is not None
    names = renaming(fresh, (c.name for c in engine.containers))
    images = renaming(fresh, (c.image for c in engine.containers))
    networks = renaming(fresh, (n.name for n in engine.networks))
    versions = renaming(fresh, (c.version for c in engine.components))
    links = renaming(fresh, (link.name for link in net.links))
    peers = renaming(fresh, (p.name for p in net.peers if p.name is not None))
    engine = dataclasses.replace(
        engine,
        containers=tuple(
            dataclasses.replace(c, name=names[c.name], image=images[c.image])
            for c in engine.containers
        ),
        networks=tuple(
            dataclasses.replace(n, name=networks[n.name], bridge=links.get(n.bridge, n.bridge))
            for n in engine.networks
        ),
        components=tuple(
            dataclasses.replace(c, version=versions[c.version]) for c in engine.components
        ),
    )
    net = dataclasses.replace(
        net,
        links=tuple(dataclasses.replace(link, name=links[link.name]) for link in net.links),
        peers=tuple(
            dataclasses.replace(p, name=None if p.name is None else peers[p.name])
            for p in net.peers
        ),
        earlier_suspects=tuple((i, links[name]) for i, name in net.earlier_suspects),
    )
    snapshot = with_facts(with_facts(base, "containers", engine), "network", net)
    maps = {
        "container": names,
        "owner": names,
        "image": images,
        "network": networks,
        "version": versions,
        "interface": links,
        "bridge": links,
        "port": links,
        "container_interface": peers,
    }
    return snapshot, maps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_names_render_and_every_label_value_round_trips(data: st.DataObject) -> None:
    snapshot, maps = hostile_host(
        lambda n: data.draw(st.lists(hostile_text, min_size=n, max_size=n, unique=True))
    )
    expected = renamed(parse(render(recorded(), WRITERS)), maps)
    assert samples(render(snapshot, WRITERS)) == expected


def nat_and_layers(
    strings: Callable[[], str], raw: Callable[[], bytes]
) -> tuple[Snapshot, dict[str, Any]]:
    """NAT rules, Docker's expectations and image layers named with hostile strings; the rules'
    interfaces decoded by the nf_tables reader's own decoder from arbitrary bytes."""
    network_name, bridge, container, chain, tag = (strings() for _ in range(5))
    out_interface = _interface(raw())
    rule = NatRule(
        "nftables", "nat", chain, "masquerade", "10.9.0.0/16", None, None, False,
        out_interface, True, None, None, None, None, 3, 300,
    )  # fmt: skip
    network = DockerNetwork("f" * 64, network_name, "bridge", bridge, ("10.8.0.0/16",), False, True)
    web = ContainerRecord(
        "e" * 64, container, tag, "sha256:1", "running", "bridge", 1.0,
        ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80),), addresses=("10.8.0.2",),
    )  # fmt: skip
    nat = NatFacts(
        backends=(FirewallBackend("nftables", True, None, 1, ("nat/DOCKER",)),),
        rules=(rule,),
        expectations=NatExpectations(networks=(network,), containers=(web,)),
        earlier_missing=("masquerade/" + network_name + "/10.8.0.0/16",),
    )
    layers = LayersFacts(
        images=(ImageFacts("sha256:1", (tag, "<none>:<none>"), ("l1",), 10, 4, 1),),
        layers=(LayerFacts("l1", "d1", 10),),
        containers=(ContainerLayer("e" * 64, container, "sha256:1", 1, 11),),
        layers_size=10,
    )
    snapshot = (
        Snapshot()
        .with_state(CollectorState("nat", True, 0.01, 1.0, nat))
        .with_state(CollectorState("layers", True, 0.01, 1.0, layers))
    )
    return snapshot, dict(
        network=network_name, bridge=bridge, container=container, chain=chain, tag=tag,
        out_interface=out_interface,
    )  # fmt: skip


def one(found: list[Sample], name: str) -> Mapping[str, str]:
    (sample,) = [s for s in found if s.name == name]
    return sample.labels


@settings(max_examples=100, deadline=None)
@given(strings=st.lists(hostile_text, min_size=5, max_size=5), raw=st.binary(max_size=40))
def test_hostile_nat_and_layer_names_round_trip(strings: list[str], raw: bytes) -> None:
    pool = iter(strings)
    snapshot, given_ = nat_and_layers(lambda: next(pool), lambda: raw)
    found = parse(render(snapshot, WRITERS))
    masq = one(found, "docker_host_nat_masquerade_rules")
    assert (masq["chain"], masq["out_interface"]) == (given_["chain"], given_["out_interface"])
    missing = one(found, "docker_host_nat_masquerade_missing")
    assert (missing["network"], missing["bridge"]) == (given_["network"], given_["bridge"])
    assert one(found, "docker_host_nat_dnat_missing")["container"] == given_["container"]
    assert one(found, "docker_host_image_info")["tags"] == given_["tag"]
    assert one(found, "docker_host_container_rw_layer_bytes")["container"] == given_["container"]


def engine_entries(encoded: str) -> tuple[Any, Any, Any]:
    """GET /containers/json, /networks and /version entries with one JSON-escaped string
    everywhere a string goes, decoded as the SDK decodes them (json.loads)."""

    def entry(template: str) -> Any:
        return json.loads(template.replace("@", encoded))

    container = entry(
        '{"Id": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",'
        ' "Names": ["/@", "/other/@"], "Image": "@", "State": "running",'
        ' "HostConfig": {"NetworkMode": "@"}, "Labels": {"@": "@"},'
        ' "Ports": [{"PublicPort": 80, "PrivatePort": 8080, "Type": "@", "IP": "@"}],'
        ' "NetworkSettings": {"Networks": {"@": {"IPAddress": "@"}}}}'
    )
    network = entry(
        '{"Id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",'
        ' "Name": "@", "Driver": "bridge", "Options": {"@": "@"}}'
    )
    version = entry('{"Version": "@", "ApiVersion": "@"}')
    return container, network, version


def engine_snapshot(encoded: str) -> tuple[Snapshot, ContainerRecord]:
    container, network, version = engine_entries(encoded)
    record = container_record(container)
    engine = EngineFacts(
        containers=(record,),
        components=engine_components(version),
        api_version=str(version.get("ApiVersion", "")),
        networks=(docker_network(network),),
    )
    return Snapshot().with_state(CollectorState("containers", True, 0.01, 1.0, engine)), record


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(hostile_text, st.text(max_size=40)))
@example(text="\0")
@example(text="/leading/slashes")
def test_engine_api_entries_with_hostile_strings_render_and_round_trip(text: str) -> None:
    snapshot, record = engine_snapshot(json.dumps(text)[1:-1])
    assert record.name == ("/" + text).lstrip("/") or record.name == "a" * 12
    assert record.image == text
    assert record.network_mode == text
    info = one(parse(render(snapshot, WRITERS)), "docker_host_container_info")
    assert (info["container"], info["image"], info["network_mode"]) == (
        record.name,
        text,
        text,
    )


def test_lone_surrogate_from_the_engine_api_still_renders() -> None:
    # JSON allows "\ud800" and json.loads keeps it as a lone surrogate; dockerd (Go) never
    # writes one, but a proxy or another engine on DOCKER_HOST may. UTF-8 has no encoding for
    # it: it is written as "?".
    snapshot, _ = engine_snapshot("web\\ud800")
    names = {s.labels.get("container") for s in parse(render(snapshot, WRITERS))}
    assert "web?" in names


def distinct_from(strings: Sequence[str]) -> Fresh:
    serial = itertools.count()
    pool = itertools.cycle(strings)
    return lambda n: [next(pool) + str(next(serial)) for _ in range(n)]


HANDFUL = [
    ['"', "\\", "\n", '\\n\\"', "\0", "\r\n\t"],
    ["ünïcödé ✓ 🐳", "\u2028", "\ufeff#", "}{=,", 'a="b"', "# TYPE x counter"],
    ["x" * 5000, "\\" * 4000, "\n" * 3000, '"' * 2000, "\0" * 1000, "é" * 6000],
]


@pytest.mark.parametrize("strings", HANDFUL, ids=["escapes", "unicode", "long"])
def test_nastiest_expositions_pass_promtool(strings: list[str], promtool: str) -> None:
    snapshot, maps = hostile_host(distinct_from(strings))
    expected = renamed(parse(render(recorded(), WRITERS)), maps)
    assert samples(render(snapshot, WRITERS)) == expected
    fresh = distinct_from(strings)
    nat, _ = nat_and_layers(lambda: fresh(1)[0], strings[0].encode)
    for state in nat.collectors.values():
        snapshot = snapshot.with_state(state)
    text = render(snapshot, WRITERS)
    assert parse(text)
    lint = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# -- ip_tables entries ---------------------------------------------------------------------


def ipt_extension(name: bytes, data: bytes, revision: int = 0) -> bytes:
    padded = data + b"\0" * (-len(data) % 8)
    return struct.pack("=H29sB", 32 + len(padded), name, revision) + padded


def ipt_entry(matches: bytes, target: bytes, invflags: int = 0, proto: int = 0) -> bytes:
    size = 112 + len(matches) + len(target)
    return (
        struct.pack(
            "=4s4s4s4s16s16s16s16sHBBIHHIQQ",
            bytes([10, 98, 0, 0]),
            b"\0" * 4,
            bytes([255, 255, 0, 0]),
            b"\0" * 4,
            b"",
            b"dhebr8",
            b"",
            b"\xff" * 7,
            proto,
            0,
            invflags,
            0,
            112 + len(matches),
            size,
            0,
            3,
            180,
        )
        + matches
        + target
    )


MASQUERADE_ENTRY = ipt_entry(b"", ipt_extension(b"MASQUERADE", b"\0" * 24), invflags=0x02)
DNAT_ENTRY = ipt_entry(
    ipt_extension(b"tcp", struct.pack("=HHHHBBBB", 0, 0xFFFF, 18998, 18998, 0, 0, 0, 0)),
    ipt_extension(
        b"DNAT",
        struct.pack(
            "=II4s4sHH",
            1,
            3,
            bytes([10, 98, 0, 5]),
            bytes([10, 98, 0, 5]),
            socket.htons(80),
            socket.htons(80),
        ),
    ),
    proto=6,
)


def test_ip_tables_entries_decode_as_written() -> None:
    masquerade, dnat = iptables.parse_entries(MASQUERADE_ENTRY + DNAT_ENTRY)
    assert (masquerade.target.name, masquerade.source, masquerade.out_interface) == (
        "MASQUERADE",
        "10.98.0.0/16",
        "dhebr8",
    )
    assert masquerade.out_negated and (masquerade.packets, masquerade.bytes) == (3, 180)
    assert dnat.protocol == 6 and iptables.destination_port(dnat.matches[0]) == 18998
    assert decode_nat_target("DNAT", 0, dnat.target.data) == ("10.98.0.5", 80)


@FUZZ
@given(data=st.one_of(st.binary(max_size=600), mutated(st.just(MASQUERADE_ENTRY + DNAT_ENTRY), 0)))
@example(data=MASQUERADE_ENTRY[:111])  # shorter than an entry: nothing to parse
@example(data=MASQUERADE_ENTRY[:90] + b"\0\0" + MASQUERADE_ENTRY[92:])  # next_offset 0
# target_offset past next_offset: the target would be read beyond the entry (and the blob)
@example(data=MASQUERADE_ENTRY[:88] + struct.pack("=HH", 256, 112) + MASQUERADE_ENTRY[92:112])
def test_hostile_ip_tables_entries_parse_or_raise(data: bytes) -> None:
    try:
        entries = iptables.parse_entries(data)
    except iptables.IptablesError:
        return
    for entry in entries:
        for match in entry.matches:
            port = iptables.destination_port(match)
            assert port is None or 0 <= port <= 0xFFFF
        if entry.source is not None:
            ipaddress.IPv4Network(entry.source)


# -- ip6_tables entries --------------------------------------------------------------------


def ip6t_entry(
    matches: bytes, target: bytes, invflags: int = 0, proto: int = 0, flags: int = 0
) -> bytes:
    """struct ip6t_entry as ip6tables-legacy writes it: 168 bytes before the matches."""
    size = 168 + len(matches) + len(target)
    return (
        struct.pack(
            "=16s16s16s16s16s16s16s16sHBBB3xIHHI4xQQ",
            ipaddress.IPv6Address("fd00:98::").packed,
            b"\0" * 16,
            b"\xff" * 8 + b"\0" * 8,
            b"\0" * 16,
            b"",
            b"dhebr8",
            b"",
            b"\xff" * 7,
            proto,
            0,
            flags,
            invflags,
            0,
            168 + len(matches),
            size,
            0,
            3,
            240,
        )
        + matches
        + target
    )


MASQUERADE6_ENTRY = ip6t_entry(b"", ipt_extension(b"MASQUERADE", b"\0" * 40), invflags=0x02)
DNAT6_ENTRY = ip6t_entry(
    ipt_extension(b"tcp", struct.pack("=HHHHBBBB", 0, 0xFFFF, 18998, 18998, 0, 0, 0, 0)),
    ipt_extension(
        b"DNAT",
        # nf_nat_range2: flags, min_addr, max_addr, min_proto, max_proto, base_proto
        struct.pack("=I", 3)
        + ipaddress.IPv6Address("fd00:98::5").packed * 2
        + struct.pack(">HHH", 80, 80, 0),
        revision=2,
    ),
    proto=6,
    flags=0x01,  # IP6T_F_PROTO: without it the kernel ignores proto
)


def test_ip6_tables_entries_decode_as_written() -> None:
    masquerade, dnat = iptables.parse_entries(MASQUERADE6_ENTRY + DNAT6_ENTRY, "ipv6")
    assert (masquerade.target.name, masquerade.source, masquerade.out_interface) == (
        "MASQUERADE",
        "fd00:98::/64",
        "dhebr8",
    )
    assert masquerade.out_negated and (masquerade.packets, masquerade.bytes) == (3, 240)
    assert masquerade.protocol == 0
    assert dnat.protocol == 6 and iptables.destination_port(dnat.matches[0]) == 18998
    assert decode_nat_target("DNAT", 2, dnat.target.data, NFPROTO_IPV6) == ("fd00:98::5", 80)
    # proto without IP6T_F_PROTO is no protocol match, as the kernel reads it
    unflagged = ip6t_entry(b"", ipt_extension(b"MASQUERADE", b"\0" * 40), proto=6)
    assert iptables.parse_entries(unflagged, "ipv6")[0].protocol == 0
    # An IPv4 entry read as IPv6 (or the reverse) is refused or misread, never a crash.
    with pytest.raises(iptables.IptablesError):
        iptables.parse_entries(MASQUERADE_ENTRY + MASQUERADE_ENTRY, "ipv6")


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=900), mutated(st.just(MASQUERADE6_ENTRY + DNAT6_ENTRY), 0))
)
@example(data=MASQUERADE6_ENTRY[:167])  # shorter than an entry: nothing to parse
@example(data=MASQUERADE6_ENTRY[:142] + b"\0\0" + MASQUERADE6_ENTRY[144:])  # next_offset 0
def test_hostile_ip6_tables_entries_parse_or_raise(data: bytes) -> None:
    try:
        entries = iptables.parse_entries(data, "ipv6")
    except iptables.IptablesError:
        return
    for entry in entries:
        for match in entry.matches:
            port = iptables.destination_port(match)
            assert port is None or 0 <= port <= 0xFFFF
        for prefix in (entry.source, entry.destination):
            if prefix is not None:
                ipaddress.IPv6Network(prefix)
        address, port = decode_nat_target(
            entry.target.name, entry.target.revision, entry.target.data, NFPROTO_IPV6
        )
        assert address is None or ipaddress.IPv6Address(address)
        assert port is None or 0 <= port <= 0xFFFF
