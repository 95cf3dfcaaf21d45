"""Hostile input into the ctnetlink decoder: entry messages built with struct as the kernel
writes them, with attributes in any order, unknown ones between, odd lengths and lying headers.
Every message decodes to a valid key or is refused; the fast path (a learnt layout) gives what
the full decoding gives, for every message, or refuses it too. And the dump loop: interrupted
dumps, the cap, refusals."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from exporter.readers.ctnetlink import (
    AF_INET,
    AF_INET6,
    NLM_F_DUMP_INTR,
    ConntrackSocket,
    DumpInterrupted,
    Key,
    KeyReader,
    decode_key,
    parse_stat,
)
from exporter.readers.netlink import NetlinkError
from tests.fuzzing import FUZZ, HEADER, NLA_F_NESTED, message, mutated, nla

CT_NEW = 1 << 8  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW
NLMSG_DONE, NLMSG_ERROR = 3, 2
TCP, UDP, ICMP = 6, 17, 1


def nested(kind: int, *attrs: bytes) -> bytes:
    return nla(kind | NLA_F_NESTED, b"".join(attrs))


def be16(value: int) -> bytes:
    return struct.pack(">H", value)


def be32(value: int) -> bytes:
    return struct.pack(">I", value)


def tuple_nest(kind: int, src: bytes, dst: bytes, proto: int, ports: tuple[int, int]) -> bytes:
    sport, dport = ports
    v6 = len(src) == 16
    ip = nested(1, nla(3 if v6 else 1, src), nla(4 if v6 else 2, dst))
    if proto in (TCP, UDP):
        l4 = nla(2, be16(sport)) + nla(3, be16(dport))
    else:  # ICMP: id, type, code
        l4 = nla(4, be16(sport)) + nla(5, b"\x08") + nla(6, b"\x00")
    return nested(kind, ip, nested(2, nla(1, bytes([proto])), l4))


def protoinfo(state: int) -> bytes:
    tcp = nested(
        1,
        nla(1, bytes([state])),
        nla(2, b"\x07"),
        nla(3, b"\x07"),
        nla(4, b"\x27\x00"),
        nla(5, b"\x23\x00"),
    )
    return nested(4, tcp)


# What the kernel writes after the tuples (6.x): status, mark, id, use, timeout, protoinfo.
def entry(
    src: bytes,
    dst: bytes,
    proto: int = TCP,
    state: int | None = 3,
    *,
    extra: tuple[bytes, ...] = (),
    family: int | None = None,
) -> bytes:
    family = family if family is not None else (AF_INET6 if len(src) == 16 else AF_INET)
    attrs = [
        tuple_nest(1, src, dst, proto, (40000, 80)),
        tuple_nest(2, dst, src, proto, (80, 40000)),
        nla(3, be32(0x18E)),
        nla(8, be32(0)),
        nla(12, be32(0x76853E00)),
        nla(11, be32(1)),
        nla(7, be32(117)),
        *extra,
    ]
    if state is not None and proto == TCP:
        attrs.append(protoinfo(state))
    return message(CT_NEW, struct.pack("=BBH", family, 0, 0) + b"".join(attrs))


A, B = socket.inet_aton("172.18.0.2"), socket.inet_aton("172.18.0.3")
A6, B6 = socket.inet_pton(socket.AF_INET6, "fd00::2"), socket.inet_pton(socket.AF_INET6, "fd00::3")
COUNTERS = nested(9, nla(1, struct.pack(">Q", 12)), nla(2, struct.pack(">Q", 1500)))
UNKNOWN = nla(99, b"\x01\x02\x03")


def both(data: bytes) -> tuple[Key | None, Key | None]:
    """The full decoding, and the fast path's after learning a layout of the same length from
    a well-formed message (None: refused)."""
    try:
        full: Key | None = decode_key(data)
    except NetlinkError:
        full = None
    reader = KeyReader()
    for seed in SEEDS:
        if len(seed) == len(data):
            reader.learn(seed)
            event("a layout of its length was learnt")
    try:
        fast: Key | None = reader.key(data, 0, len(data))
    except NetlinkError:
        fast = None
    return full, fast


SEEDS = [
    entry(A, B),
    entry(A, B, UDP, None),
    entry(A, B, ICMP, None),
    entry(A6, B6),
    entry(A6, B6, UDP, None),
    entry(A, B, extra=(COUNTERS,)),
    entry(A, B, extra=(UNKNOWN,)),
]


def test_kernel_shaped_entries_decode() -> None:
    assert decode_key(entry(A, B)) == (AF_INET, TCP, A, B, 3)
    assert decode_key(entry(A, B, UDP, None)) == (AF_INET, UDP, A, B, None)
    assert decode_key(entry(A, B, ICMP, None)) == (AF_INET, ICMP, A, B, None)
    assert decode_key(entry(A6, B6, TCP, 7)) == (AF_INET6, TCP, A6, B6, 7)
    reader = KeyReader()
    for seed in SEEDS:  # the first of each length is learnt, the second read by its layout
        assert reader.key(seed, 0, len(seed)) == reader.key(seed, 0, len(seed)) == decode_key(seed)


@FUZZ
@given(
    src=st.sampled_from([A, B, A6]),
    proto=st.sampled_from([TCP, UDP, ICMP, 132, 0]),
    state=st.one_of(st.none(), st.integers(0, 255)),
    extra=st.lists(st.sampled_from([COUNTERS, UNKNOWN, nla(20, b""), nested(3, b"")]), max_size=3),
)
def test_entries_with_other_attributes_decode(
    src: bytes, proto: int, state: int | None, extra: list[bytes]
) -> None:
    dst = B6 if len(src) == 16 else B
    data = entry(src, dst, proto, state, extra=tuple(extra))
    full, fast = both(data)
    assert (
        full
        == fast
        == (
            AF_INET6 if len(src) == 16 else AF_INET,
            proto,
            src,
            dst,
            state if proto == TCP else None,
        )
    )


def valid(key: Key) -> None:
    family, proto, src, reply_src, state = key
    assert 0 <= family <= 255 and 0 <= proto <= 255
    for address in (src, reply_src):
        assert address is None or (isinstance(address, bytes) and len(address) in (4, 16))
    assert state is None or 0 <= state <= 255


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=120), mutated(st.sampled_from(SEEDS), start=HEADER.size + 4))
)
@example(data=entry(A, B)[:-1])
@example(data=entry(A, B).replace(b"\x08\x00\x01\x00" + A, b"\x07\x00\x01\x00" + A))
def test_hostile_messages_decode_alike_on_both_paths(data: bytes) -> None:
    full, fast = both(data)
    assert full == fast
    event("refused" if full is None else f"decoded, proto {full[1]}")
    if full is not None:
        valid(full)


def test_parse_stat_sums_per_cpu_by_name() -> None:
    new = (
        "entries  clashres found new invalid ignore delete chainlength insert insert_failed "
        "drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n"
        + "0000000a  00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000000 "
        "00000001 00000003 00000000 00000000  00000000 00000000 00000000 0000000f\n" * 2
    )
    assert dict(parse_stat(new)) == {
        "insert_failed": 2,
        "drop": 6,
        "early_drop": 0,
        "search_restart": 30,
        "invalid": 4,
    }
    old = "entries searched found new invalid ignore delete delete_list insert insert_failed drop"
    assert dict(parse_stat(old + "\n" + " ".join(["00000001"] * 11) + "\n")) == {
        "insert_failed": 1,
        "drop": 1,
        "invalid": 1,
    }
    with pytest.raises(ValueError):
        parse_stat(old + "\n00000001 00000002\n")


# -- the dump loop, over a socket that answers from a script ---------------------------------


class Scripted:
    """A netlink socket whose answers are given: one datagram per recv."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams: Iterator[bytes] = iter(datagrams)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, _size: int) -> bytes:
        return next(self.datagrams)

    def close(self) -> None:
        pass


def scripted(datagrams: list[bytes]) -> ConntrackSocket:
    sock = ConntrackSocket()
    sock._sock.close()
    sock._sock = Scripted(datagrams)  # type: ignore[assignment]
    return sock


def answer(body: bytes, flags: int = 2) -> bytes:
    (msg_type,) = struct.unpack_from("=H", body, 4)
    return message(msg_type, body[16:], flags=flags, seq=1)


DONE = message(NLMSG_DONE, struct.pack("=i", 0), seq=1)
OWNERS = {A: "client", B: "server"}


def test_a_dump_is_counted_by_owner() -> None:
    entries = [entry(A, B), entry(A, B), entry(B, socket.inet_aton("8.8.8.8"), UDP, None)]
    sock = scripted([b"".join(answer(e) for e in entries[:2]), answer(entries[2]) + DONE])
    counts, reusable = sock.count(AF_INET, OWNERS, 100)
    assert reusable and not counts.capped and counts.read == 3
    assert counts.counts == {
        (AF_INET, "client", "server", TCP, 3): 2,
        (AF_INET, "server", None, UDP, None): 1,
    }
    request: Any = sock._sock
    assert struct.unpack_from("=HH", request.sent[0], 4) == ((1 << 8) | 1, 0x301)


def test_the_cap_stops_the_dump_and_says_so() -> None:
    sock = scripted([b"".join(answer(entry(A, B)) for _ in range(5)) + DONE])
    counts, reusable = sock.count(AF_INET, OWNERS, 3)
    assert counts.capped and counts.read == 3 and not reusable


def test_an_interrupted_dump_is_refused_not_counted() -> None:
    flagged = answer(entry(A, B), flags=2 | NLM_F_DUMP_INTR)
    sock = scripted([answer(entry(A, B)) + flagged + DONE])
    with pytest.raises(DumpInterrupted):
        sock.count(AF_INET, OWNERS, 100)


def test_a_refused_dump_raises_its_errno() -> None:
    error = message(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + b"\0" * 16, seq=1)
    with pytest.raises(NetlinkError) as refused:
        scripted([error]).count(AF_INET, OWNERS, 100)
    assert refused.value.errno == errno.EPERM


def test_answers_to_other_requests_are_ignored() -> None:
    stale = message(CT_NEW, entry(A, B)[16:], seq=7)
    counts, _ = scripted([stale + answer(entry(A, B)) + DONE]).count(AF_INET, OWNERS, 100)
    assert counts.read == 1
