"""Connection tracking, read directly: the table's size and the kernel's counters from procfs,
and the entries themselves over ctnetlink (NETLINK_NETFILTER, NFNL_SUBSYS_CTNETLINK), counted
as they stream in, never kept.

The numbers are linux/netfilter/nfnetlink_conntrack.h's and nf_conntrack_tcp.h's; a unit test
checks each against pyroute2's tables, and an integration test holds the decoding to
`conntrack -L -o extended` and to pyroute2's decoder on the live table.

A dump of 100,000 entries is 21 MB of messages, and on this project's VM the kernel alone
spends ~2.2 us building each one (the same ~230 ms `conntrack -L` pays), so the decoder must
stay near 1 us an entry. Each message is decoded once in full (`decode_key`), which also
learns its layout: where its headers sit and what they say, and where the four values the
exporter counts by are. The kernel writes every entry of one kind (IPv4 TCP, IPv4 UDP, ...)
with the same layout, so a later message of the same length is checked against that layout in
one step (its bytes, masked to the headers and padding, compared as one integer) and its values
read with one struct; a message that differs anywhere but in the values is decoded in full. The
fast path gives what the full decoding would, byte for byte; a fuzz test holds it to that.
"""

from __future__ import annotations

import errno
import operator
import socket
import struct
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from exporter.readers.netlink import (
    NLA_TYPE_MASK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NetlinkError,
    NetlinkSocket,
    _error,
    _malformed,
)
from exporter.readers.nfnetlink import NETLINK_NETFILTER

# linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
NLM_F_DUMP_INTR = 0x10  # linux/netlink.h: the dump was interrupted, its answer inconsistent
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 10
CTA = {"CTA_TUPLE_ORIG": 1, "CTA_TUPLE_REPLY": 2, "CTA_STATUS": 3, "CTA_PROTOINFO": 4}
CTA_TUPLE = {"CTA_TUPLE_IP": 1, "CTA_TUPLE_PROTO": 2}
CTA_IP = {"CTA_IP_V4_SRC": 1, "CTA_IP_V4_DST": 2, "CTA_IP_V6_SRC": 3, "CTA_IP_V6_DST": 4}
CTA_PROTO = {"CTA_PROTO_NUM": 1, "CTA_PROTO_SRC_PORT": 2, "CTA_PROTO_DST_PORT": 3}
CTA_PROTOINFO = {"CTA_PROTOINFO_TCP": 1}
CTA_PROTOINFO_TCP = {"CTA_PROTOINFO_TCP_STATE": 1}
# enum tcp_conntrack, by number (9 was LISTEN before it became SYN_SENT2).
TCP_STATES = (
    "none", "syn_sent", "syn_recv", "established", "fin_wait", "close_wait", "last_ack",
    "time_wait", "close", "syn_sent2",
)  # fmt: skip
# The per-CPU counters of /proc/net/stat/nf_conntrack the exporter sums, by the kernel's names.
STAT_NAMES = ("insert_failed", "drop", "early_drop", "search_restart", "invalid")

_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_NFGENMSG = struct.Struct("=BBH")  # family, version, res_id
_NLA = struct.Struct("=HH")
_ATTRS_START = _HEADER.size + _NFGENMSG.size
_CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
_ADDRESS_SIZES = {CTA_IP["CTA_IP_V4_SRC"]: 4, CTA_IP["CTA_IP_V6_SRC"]: 16}
_BUFFER = 1 << 16  # a dump's answers come in skbs of at most 32 KiB
_MAX_LAYOUTS = 64

# What one entry is counted by: (family, protocol, original source, reply source, TCP state).
# Addresses packed (4 or 16 bytes); None when the entry lacks them; protocol 0 when it lacks one.
Key = tuple[int, int, bytes | None, bytes | None, int | None]


# -- procfs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConntrackTable:
    """The host's table as procfs shows it (the reading process's network namespace)."""

    entries: int  # nf_conntrack_count
    limit: int  # nf_conntrack_max
    buckets: int  # nf_conntrack_buckets: the hash table's size
    # The per-CPU counters of STAT_NAMES summed, as (name, value); only those this kernel has.
    stats: tuple[tuple[str, int], ...]


def parse_stat(text: str) -> tuple[tuple[str, int], ...]:
    """/proc/net/stat/nf_conntrack: a header line of names, then one line of hex values per
    CPU. Columns are found by name: kernels add and remove them."""
    lines = text.split("\n")
    names = lines[0].split()
    sums = dict.fromkeys((n for n in STAT_NAMES if n in names), 0)
    for line in lines[1:]:
        values = line.split()
        if not values:
            continue
        if len(values) != len(names):
            raise ValueError(f"nf_conntrack stat line of {len(values)} fields, {len(names)} named")
        for name in sums:
            sums[name] += int(values[names.index(name)], 16)
    return tuple(sums.items())


def read_table(procfs: str | Path) -> ConntrackTable | None:
    """None when the kernel tracks no connections (nf_conntrack not loaded). Never loads it:
    only files are read here, and a dump (ConntrackSocket) is only asked for when this says
    the table exists."""
    sysctl = Path(procfs, "sys", "net", "netfilter")
    try:
        entries = int(Path(sysctl, "nf_conntrack_count").read_text())
    except FileNotFoundError:
        return None
    return ConntrackTable(
        entries=entries,
        limit=int(Path(sysctl, "nf_conntrack_max").read_text()),
        buckets=int(Path(sysctl, "nf_conntrack_buckets").read_text()),
        stats=parse_stat(Path(procfs, "net", "stat", "nf_conntrack").read_text()),
    )


# -- decoding one entry ---------------------------------------------------------------------


def _level(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """One level of attributes as (type, payload start, payload end), in order. Stops at a
    length under 4, as the kernel's own parser does; refuses one that overruns its level."""
    found: list[tuple[int, int, int]] = []
    offset = start
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        if offset + length > end:
            raise _malformed(f"ctnetlink attribute {kind & NLA_TYPE_MASK} overruns its nest")
        found.append((kind & NLA_TYPE_MASK, offset + 4, offset + length))
        offset += (length + 3) & ~3
    return found


class _Learner:
    """What a full decoding read, to make a layout of: payload bytes that may differ from one
    entry to the next, and where the counted values are."""

    def __init__(self) -> None:
        self.variable: list[tuple[int, int]] = []
        self.values: dict[str, tuple[int, str]] = {}  # name -> (offset, struct code)


def _walk(
    data: bytes, start: int, end: int, into: tuple[int, ...], learn: _Learner | None
) -> dict[int, tuple[int, int]]:
    """A level's attributes by type, the last of a type winning. The payloads of all but the
    winners of `into` (which the caller reads further) may vary between entries."""
    attrs = _level(data, start, end)
    winners = {kind: (s, e) for kind, s, e in attrs}
    if learn is not None:
        chosen = {winners[k] for k in into if k in winners}
        learn.variable += [(s, e) for _, s, e in attrs if (s, e) not in chosen]
    return winners


def _leaf(learn: _Learner | None, name: str, span: tuple[int, int], code: str) -> None:
    if learn is not None:
        learn.values[name] = (span[0], code)


def _tuple(
    data: bytes, span: tuple[int, int], learn: _Learner | None, which: str
) -> tuple[bytes | None, int]:
    """A CTA_TUPLE_* nest: its source address (packed) and protocol number."""
    ip, proto = CTA_TUPLE["CTA_TUPLE_IP"], CTA_TUPLE["CTA_TUPLE_PROTO"]
    nest = _walk(data, *span, (ip, proto), learn)
    address: bytes | None = None
    if ip_span := nest.get(ip):
        found = _walk(data, *ip_span, (), learn)
        for kind, size in _ADDRESS_SIZES.items():
            if src := found.get(kind):
                if src[1] - src[0] != size:
                    raise _malformed(f"address of {src[1] - src[0]} bytes where {size} are read")
                address = bytes(data[src[0] : src[1]])
                _leaf(learn, f"{which}src", src, f"{size}s")
                break
    number = 0
    if proto_span := nest.get(proto):
        num = _walk(data, *proto_span, (), learn).get(CTA_PROTO["CTA_PROTO_NUM"])
        if num is not None:
            if num[1] <= num[0]:
                raise _malformed("empty CTA_PROTO_NUM")
            number = data[num[0]]
            if which == "orig_":  # the reply's protocol is the same: not read again
                _leaf(learn, "orig_proto", num, "B")
    return address, number


def _decode(data: bytes, learn: _Learner | None) -> Key:
    if len(data) < _ATTRS_START:
        raise _malformed(f"ctnetlink message of {len(data)} bytes")
    family = data[_HEADER.size]
    orig, reply, info = CTA["CTA_TUPLE_ORIG"], CTA["CTA_TUPLE_REPLY"], CTA["CTA_PROTOINFO"]
    top = _walk(data, _ATTRS_START, len(data), (orig, reply, info), learn)
    src: bytes | None = None
    reply_src: bytes | None = None
    protocol = 0
    if span := top.get(orig):
        src, protocol = _tuple(data, span, learn, "orig_")
    if span := top.get(reply):
        reply_src, _ = _tuple(data, span, learn, "reply_")
    state: int | None = None
    if span := top.get(info):
        tcp = CTA_PROTOINFO["CTA_PROTOINFO_TCP"]
        tcp_span = _walk(data, *span, (tcp,), learn).get(tcp)
        if tcp_span is not None:
            state_span = _walk(data, *tcp_span, (), learn).get(
                CTA_PROTOINFO_TCP["CTA_PROTOINFO_TCP_STATE"]
            )
            if state_span is not None:
                if state_span[1] <= state_span[0]:
                    raise _malformed("empty CTA_PROTOINFO_TCP_STATE")
                state = data[state_span[0]]
                _leaf(learn, "state", state_span, "B")
    return (family, protocol, src, reply_src, state)


def decode_key(message: bytes) -> Key:
    """One IPCTNL_MSG_CT_NEW message (header included), in full: what it is counted by.
    Raises NetlinkError if it is malformed."""
    return _decode(message, None)


# -- the fast path --------------------------------------------------------------------------


# (mask, expected, values, family): the mask over the message from its nfgenmsg on, 0xFF for
# each byte that must match; what those bytes must be; the reader of (original source,
# protocol, reply source, TCP state) at a message's offset; the family the layout implies.
# A tuple: it is read once per entry.
_Layout = tuple[
    int, int, Callable[[bytes, int], tuple[bytes | None, int, bytes | None, int | None]], int
]
_ORDER = ("orig_src", "orig_proto", "reply_src", "state")


def _layout(message: bytes, learn: _Learner, family: int) -> _Layout:
    fixed = bytearray(b"\xff" * (len(message) - _HEADER.size))
    for start, end in learn.variable:
        fixed[start - _HEADER.size : end - _HEADER.size] = bytes(end - start)
    mask = int.from_bytes(fixed, "little")
    expected = int.from_bytes(message[_HEADER.size :], "little") & mask
    fields = sorted((offset, code, name) for name, (offset, code) in learn.values.items())
    fmt, at = "=", 0
    for offset, code, _ in fields:
        fmt += f"{offset - at}x{code}"
        at = offset + struct.calcsize("=" + code)
    unpack = struct.Struct(fmt).unpack_from
    names = tuple(name for _, _, name in fields)
    if names == _ORDER:  # as the kernel writes a TCP entry: one struct reads all four
        return (mask, expected, unpack, family)
    # Otherwise the four by position in what unpack returns, with defaults appended for those
    # this layout lacks (no address, protocol 0, no state).
    defaults = (None, 0)
    pick = operator.itemgetter(
        *(
            names.index(name) if name in names else len(names) + (1 if name == "orig_proto" else 0)
            for name in _ORDER
        )
    )

    def values(data: bytes, offset: int) -> tuple[bytes | None, int, bytes | None, int | None]:
        found: tuple[bytes | None, int, bytes | None, int | None] = pick(
            unpack(data, offset) + defaults
        )
        return found

    return (mask, expected, values, family)


class KeyReader:
    """Messages to keys, learning layouts as it goes."""

    def __init__(self) -> None:
        self.layouts: dict[int, _Layout] = {}  # by message length

    def key(self, data: bytes, offset: int, length: int) -> Key:
        """The key of the message at data[offset:offset + length]: by its layout when one of
        that length matches, else decoded in full (and its layout learnt)."""
        layout = self.layouts.get(length)
        if layout is not None:
            mask, expected, values, family = layout
            if int.from_bytes(data[offset + _HEADER.size : offset + length], "little") & mask == (
                expected
            ):
                src, protocol, reply_src, state = values(data, offset)
                return (family, protocol, src, reply_src, state)
        return self.learn(data[offset : offset + length])

    def learn(self, message: bytes) -> Key:
        learn = _Learner()
        found = _decode(message, learn)
        if len(self.layouts) >= _MAX_LAYOUTS:
            self.layouts.clear()
        self.layouts[len(message)] = _layout(message, learn, found[0])
        return found


# -- the dump -------------------------------------------------------------------------------


class DumpInterrupted(NetlinkError):
    """The kernel flagged the dump NLM_F_DUMP_INTR: the table changed under it in a way that
    makes what it sent inconsistent."""

    def __init__(self) -> None:
        super().__init__(errno.EINTR, "conntrack dump interrupted by the kernel (NLM_F_DUMP_INTR)")


@dataclass(frozen=True)
class DumpCounts:
    """One dump, counted: entries by (family, original source's owner, reply source's owner,
    protocol, TCP state), the owners as the caller named addresses (None: an address it did
    not name)."""

    counts: dict[tuple[int, str | None, str | None, int, int | None], int]
    read: int
    capped: bool  # stopped at the cap: entries after it were not read


class ConntrackSocket(NetlinkSocket):
    """NETLINK_NETFILTER, ctnetlink: dumps only (read-only). Needs CAP_NET_ADMIN (EPERM)."""

    def __init__(self, timeout: float = 5.0) -> None:
        super().__init__(NETLINK_NETFILTER, timeout)
        self._keys = KeyReader()

    def count(
        self, family: int, owners: Mapping[bytes, str], max_entries: int
    ) -> tuple[DumpCounts, bool]:
        """One dump of the table (family AF_INET, AF_INET6 or AF_UNSPEC for both: the kernel
        leaves out the others), counted by owner. Returns the counts and whether the socket
        may be used again (not after a dump left unread at the cap). Raises NetlinkError
        (EPERM without CAP_NET_ADMIN), DumpInterrupted, or OSError (a timeout)."""
        request = ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP)
        seq = self._send(*request, _NFGENMSG.pack(family, 0, 0))
        sock, unpack = self._sock, _HEADER.unpack_from
        layouts, learn = self._keys.layouts, self._keys.learn
        owner = cast(Callable[[bytes | None], str | None], owners.get)
        from_bytes = int.from_bytes
        counts: defaultdict[tuple[int, str | None, str | None, int, int | None], int] = defaultdict(
            int
        )
        read, interrupted = 0, False
        while True:
            # bytes, not a reused bytearray: int.from_bytes reads bytes at twice the speed, and
            # at 64 KiB the allocation stays below malloc's mmap threshold.
            data = sock.recv(_BUFFER)
            size, offset = len(data), 0
            while offset + 16 <= size:
                length, kind, flags, reply_seq, _ = unpack(data, offset)
                if length < 16 or offset + length > size:
                    raise _malformed(f"message length {length} at {offset} of a {size}-byte read")
                if reply_seq == seq:
                    interrupted |= bool(flags & NLM_F_DUMP_INTR)
                    if kind == _CT_NEW:
                        if read >= max_entries:
                            return DumpCounts(counts, read, capped=True), False
                        # KeyReader.key, inlined: this line runs once per entry.
                        layout = layouts.get(length)
                        if (
                            layout is not None
                            and from_bytes(data[offset + 16 : offset + length], "little")
                            & layout[0]
                            == layout[1]
                        ):
                            src, proto, reply_src, state = layout[2](data, offset)
                            fam = layout[3]
                        else:
                            fam, proto, src, reply_src, state = learn(
                                data[offset : offset + length]
                            )
                        counted = (fam, owner(src), owner(reply_src), proto, state)
                        counts[counted] += 1
                        read += 1
                    elif kind in (NLMSG_DONE, NLMSG_ERROR):
                        if (error := _error(data[offset : offset + length])) is not None:
                            raise error
                        if interrupted:
                            raise DumpInterrupted()
                        return DumpCounts(counts, read, capped=False), True
                offset += (length + 3) & ~3


def dump_families(ipv6: bool) -> int:
    """The dump's family filter: IPv4 only unless IPv6 entries can be attributed."""
    return AF_UNSPEC if ipv6 else AF_INET


def family_name(family: int) -> str:
    return {AF_INET: "ipv4", AF_INET6: "ipv6"}.get(family, str(family))


def address_of(packed: bytes) -> str:
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed)
