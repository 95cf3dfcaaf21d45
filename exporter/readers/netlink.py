"""Netlink, spoken directly: rtnetlink over one persistent NETLINK_ROUTE socket, and the
framing nfnetlink (nf_tables) shares with it.

The protocol numbers below are the kernel's uapi headers' (linux/rtnetlink.h, if_link.h,
net_namespace.h); a unit test checks each against pyroute2's tables. The messages are parsed
with struct, reading only the attributes the exporter uses: on this project's 2-core VM with
250 veths, pyroute2's generic decoder spent ~180 us per link (46 ms for one dump, and its
IPRoute path ~70 ms) where this parse spends ~9 us, and importing pyroute2 costs 13 MB of RSS.
See bench/ and the README.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# linux/netlink.h


@dataclass(frozen=True)
class LinkCounters:
    """IFLA_STATS64 as the host side of a link counts them."""

    rx_bytes: int
    tx_bytes: int
    rx_packets: int
    tx_packets: int
    rx_dropped: int
    tx_dropped: int
    rx_errors: int
    tx_errors: int

    def __hash__(self) -> int:
        # A block's key on every write of the veths' traffic (metrics.Families.blocks_of), and
        # a link's counters stay the same object while they do not move (RtnlSocket.link_stats):
        # hashed once an object, not from eight fields read anew on every write. Not a field, so
        # equality, repr and the fact codec see only the counters.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(
                (
                    self.rx_bytes,
                    self.tx_bytes,
                    self.rx_packets,
                    self.tx_packets,
                    self.rx_dropped,
                    self.tx_dropped,
                    self.rx_errors,
                    self.tx_errors,
                )
            )
            object.__setattr__(self, "_hash", cached)
        return cached


@dataclass(frozen=True)
class Link:
    """A network interface as one RTM_NEWLINK message describes it."""

    index: int
    name: str
    kind: str
    master: int | None
    peer_index: int | None  # IFLA_LINK: the peer's ifindex, in the peer's namespace
    peer_nsid: int | None  # IFLA_LINK_NETNSID: None when the peer is in this namespace
    operstate: str
    port_state: str | None  # STP state, when this link is a bridge port
    stp_enabled: bool | None  # when this link is a bridge
    counters: LinkCounters | None


NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_GETADDR = 22
RTM_NEWNSID = 88
RTM_DELNSID = 89
RTM_GETNSID = 90
RTM_NEWSTATS = 92
RTM_GETSTATS = 94
# rtnetlink multicast groups (enum rtnetlink_groups): what the change feed subscribes to.
RTNLGRP_LINK = 1
RTNLGRP_NSID = 28
# linux/netlink.h socket option (level SOL_NETLINK) joining a group by number.
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
# Also hear the namespaces this one gives an id to (the veths' far ends), each message with the
# id as ancillary data of this type (needs CAP_NET_BROADCAST).
NETLINK_LISTEN_ALL_NSID = 8
# if_link.h: IFLA_STATS_LINK_64, the attribute RTM_GETSTATS answers with (and its filter bit).
IFLA_STATS_LINK_64 = 1
# linux/if_link.h: the IFLA_* attributes of an ifinfomsg, and those nested in them.
IFLA = {
    "IFLA_IFNAME": 3,
    "IFLA_LINK": 5,
    "IFLA_MASTER": 10,
    "IFLA_OPERSTATE": 16,
    "IFLA_LINKINFO": 18,
    "IFLA_STATS64": 23,
    "IFLA_EXT_MASK": 29,
    "IFLA_LINK_NETNSID": 37,
    "IFLA_IF_NETNSID": 46,
}
IFLA_INFO = {
    "IFLA_INFO_KIND": 1,
    "IFLA_INFO_DATA": 2,
    "IFLA_INFO_SLAVE_KIND": 4,
    "IFLA_INFO_SLAVE_DATA": 5,
}
IFLA_BR = {"IFLA_BR_STP_STATE": 5}
IFLA_BRPORT = {"IFLA_BRPORT_STATE": 1}
# linux/if_addr.h: the IFA_* attributes of an ifaddrmsg.
IFA = {"IFA_ADDRESS": 1, "IFA_LOCAL": 2}
# linux/net_namespace.h
NETNSA = {"NETNSA_NSID": 1, "NETNSA_FD": 3}
# struct rtnl_link_stats64, in order (later kernels append fields).
STATS64_FIELDS = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
    "rx_dropped", "tx_dropped", "multicast", "collisions",
)  # fmt: skip
# IF_OPER_*, RFC 2863 operational states, by number.
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
# Bridge port STP states, linux/if_bridge.h BR_STATE_*.
PORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")

RTEXT_FILTER_SKIP_STATS = 1 << 3
# Requests per write in a batch: the answers to one window must fit the receive buffer
# (a link answer is ~1.5 KB; 256 of them ~400 KB of the 1 MB asked for).
_BATCH_WINDOW = 256
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_NLA = struct.Struct("=HH")  # nlattr: length, type
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg
_RTGEN = struct.Struct("=Bxxx")  # rtgenmsg, padded
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg
_IFSTATS = struct.Struct("=BxxxII")  # if_stats_msg: family, pads, ifindex, filter_mask
_COUNTERS = (
    "rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
    "rx_dropped", "tx_dropped", "rx_errors", "tx_errors",
)  # fmt: skip
# Only the leading fields read: IFLA_STATS64 has grown over kernel versions (23, 24 fields...).
_STATS64_READ = STATS64_FIELDS[: max(STATS64_FIELDS.index(name) for name in _COUNTERS) + 1]
_STATS64 = struct.Struct("=" + "Q" * len(_STATS64_READ))


class NetlinkError(OSError):
    pass


def _malformed(what: str) -> NetlinkError:
    return NetlinkError(errno.EBADMSG, f"malformed netlink message: {what}")


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """attribute type -> (payload start, payload end) for one level of TLVs."""
    found: dict[int, tuple[int, int]] = {}
    offset = start
    unpack = _NLA.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4:
            break
        if offset + length > end:
            raise _malformed(f"attribute {kind & NLA_TYPE_MASK} overruns its message")
        found[kind & NLA_TYPE_MASK] = (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return found


def _find(data: bytes, start: int, wanted: int) -> tuple[int, int] | None:
    """The first attribute of type `wanted` at one level, stopping as soon as it is found."""
    offset, end = start, len(data)
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            return None
        if offset + length > end:
            raise _malformed(f"attribute {kind & NLA_TYPE_MASK} overruns its message")
        if kind & NLA_TYPE_MASK == wanted:
            return (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return None


def _sized(span: tuple[int, int], size: int) -> int:
    """The payload's start, once it is known to hold `size` bytes: a short attribute is refused,
    not read on into its neighbour."""
    if span[1] - span[0] < size:
        raise _malformed(f"attribute of {span[1] - span[0]} bytes where {size} are read")
    return span[0]


def _u32(data: bytes, span: tuple[int, int] | None) -> int | None:
    return struct.unpack_from("=I", data, _sized(span, 4))[0] if span else None


def _i32(data: bytes, span: tuple[int, int] | None) -> int | None:
    return struct.unpack_from("=i", data, _sized(span, 4))[0] if span else None


def _code(data: bytes, span: tuple[int, int], names: tuple[str, ...]) -> str:
    """A u8 state by name; a code this table does not know (a newer kernel's) as its number."""
    code = data[_sized(span, 1)]
    return names[code] if code < len(names) else str(code)


def _text(data: bytes, span: tuple[int, int] | None) -> str:
    return data[span[0] : span[1]].split(b"\0", 1)[0].decode(errors="replace") if span else ""


def _counters(data: bytes, span: tuple[int, int]) -> LinkCounters:
    """The counters exported, from a struct rtnl_link_stats64."""
    start = _sized(span, _STATS64.size)
    values = dict(zip(_STATS64_READ, _STATS64.unpack_from(data, start), strict=True))
    return LinkCounters(*(values[name] for name in _COUNTERS))


def parse_link(data: bytes, counters: bool = True) -> Link:
    """One RTM_NEWLINK message (header included). Raises NetlinkError if it is malformed.
    counters=False: IFLA_STATS64 is not read (Link.counters is None)."""
    if len(data) < _HEADER.size + _IFINFO.size:
        raise _malformed(f"RTM_NEWLINK of {len(data)} bytes")
    _, _, index, _, _ = _IFINFO.unpack_from(data, _HEADER.size)
    top = _attrs(data, _HEADER.size + _IFINFO.size, len(data))
    kind = slave_kind = ""
    port_state: str | None = None
    stp_enabled: bool | None = None
    if info_span := top.get(IFLA["IFLA_LINKINFO"]):
        info = _attrs(data, *info_span)
        kind = _text(data, info.get(IFLA_INFO["IFLA_INFO_KIND"]))
        slave_kind = _text(data, info.get(IFLA_INFO["IFLA_INFO_SLAVE_KIND"]))
        if slave_kind == "bridge" and (slave := info.get(IFLA_INFO["IFLA_INFO_SLAVE_DATA"])):
            state_span = _attrs(data, *slave).get(IFLA_BRPORT["IFLA_BRPORT_STATE"])
            if state_span:
                port_state = _code(data, state_span, PORT_STATES)
        if kind == "bridge" and (bridge := info.get(IFLA_INFO["IFLA_INFO_DATA"])):
            stp = _u32(data, _attrs(data, *bridge).get(IFLA_BR["IFLA_BR_STP_STATE"]))
            stp_enabled = None if stp is None else stp != 0
    counted: LinkCounters | None = None
    if counters and (stats_span := top.get(IFLA["IFLA_STATS64"])):
        counted = _counters(data, stats_span)
    operstate_span = top.get(IFLA["IFLA_OPERSTATE"])
    operstate = _code(data, operstate_span, OPERSTATES) if operstate_span else "unknown"
    peer_index = _i32(data, top.get(IFLA["IFLA_LINK"]))
    return Link(
        index=index,
        name=_text(data, top.get(IFLA["IFLA_IFNAME"])),
        kind=kind,
        master=_u32(data, top.get(IFLA["IFLA_MASTER"])),
        # A link that is its own IFLA_LINK (or 0) has no peer.
        peer_index=peer_index if peer_index not in (None, 0, index) else None,
        peer_nsid=_i32(data, top.get(IFLA["IFLA_LINK_NETNSID"])),
        operstate=operstate,
        port_state=port_state,
        stp_enabled=stp_enabled,
        counters=counted,
    )


def parse_stats(data: bytes) -> tuple[int, LinkCounters | None]:
    """One RTM_NEWSTATS message: (ifindex, its IFLA_STATS_LINK_64 counters, None if absent).
    Raises NetlinkError if it is malformed."""
    if len(data) < _HEADER.size + _IFSTATS.size:
        raise _malformed(f"RTM_NEWSTATS of {len(data)} bytes")
    _, index, _ = _IFSTATS.unpack_from(data, _HEADER.size)
    span = _find(data, _HEADER.size + _IFSTATS.size, IFLA_STATS_LINK_64)
    return index, _counters(data, span) if span is not None else None


def link_changes(datagram: bytes, nsids: set[int], indexes: set[int] | None = None) -> int:
    """How many link and namespace-id notifications one datagram of the change feed holds;
    the ids given or released are added to `nsids`, and the ifindex each link notification
    names to `indexes`. Raises NetlinkError if it is malformed."""
    messages = 0
    for kind, _, _, message in _split(datagram):
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            messages += 1
            if indexes is not None:
                if len(message) < _HEADER.size + _IFINFO.size:
                    raise _malformed(f"link notification of {len(message)} bytes")
                indexes.add(_IFINFO.unpack_from(message, _HEADER.size)[2])
        elif kind in (RTM_NEWNSID, RTM_DELNSID):
            messages += 1
            span = _find(message, _HEADER.size + _RTGEN.size, NETNSA["NETNSA_NSID"])
            if (nsid := _i32(message, span)) is not None and nsid >= 0:
                nsids.add(nsid)
    return messages


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((-length) % 4)


def _split(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, message) for each netlink message in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, seq, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            # A zero length would never advance; a long one would be cut short.
            raise _malformed(f"message length {length} at {offset} of a {len(data)}-byte read")
        yield kind, flags, seq, data[offset : offset + length]
        offset += (length + 3) & ~3


def _error(message: bytes) -> NetlinkError | None:
    """The errno an NLMSG_ERROR carries; None for an acknowledgement (error 0)."""
    if len(message) < _HEADER.size + 4:
        return _malformed(f"NLMSG_ERROR of {len(message)} bytes")
    code = -struct.unpack_from("=i", message, _HEADER.size)[0]
    if not 0 <= code < 4096:  # the kernel sends -errno, and errno values end at MAX_ERRNO
        return _malformed(f"NLMSG_ERROR with error {-code}")
    return NetlinkError(code, os.strerror(code)) if code else None


class NetlinkSocket:
    """One netlink socket of a protocol, kept open across samples and closed by close()."""

    def __init__(self, protocol: int, timeout: float = 5.0) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol
        )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.bind((0, 0))
        self._sock.settimeout(timeout)
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._sock.send(
            _HEADER.pack(_HEADER.size + len(body), msg_type, flags, self._seq, 0) + body
        )
        return self._seq

    def _replies(self, seq: int) -> Iterator[bytes]:
        """Messages answering `seq`, until DONE (dumps) or the first reply (gets)."""
        while True:
            for kind, flags, reply_seq, message in _split(self._sock.recv(1 << 20)):
                if reply_seq != seq:
                    continue  # a late answer to a request abandoned by a timeout
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    if (error := _error(message)) is None:
                        return
                    raise error
                yield message
                if not flags & NLM_F_MULTI:  # a single answer
                    return

    def _batch(self, msg_type: int, bodies: Sequence[bytes]) -> list[bytes | NetlinkError]:
        """One answer per request: requests go out many to a write and answers come back many
        to a read, in windows small enough that the answers fit the receive buffer."""
        answers: list[bytes | NetlinkError] = []
        for start in range(0, len(bodies), _BATCH_WINDOW):
            window = bodies[start : start + _BATCH_WINDOW]
            expected: dict[int, int] = {}
            out = bytearray()
            for position, body in enumerate(window):
                self._seq = (self._seq + 1) & 0xFFFFFFFF
                expected[self._seq] = position
                out += _HEADER.pack(_HEADER.size + len(body), msg_type, NLM_F_REQUEST, self._seq, 0)
                out += body
            self._sock.sendall(out)
            got: dict[int, bytes | NetlinkError] = {}
            while len(got) < len(window):
                for kind, _, seq, message in _split(self._sock.recv(1 << 20)):
                    if seq not in expected:
                        continue  # a late answer to a request abandoned by a timeout
                    error = _error(message) if kind == NLMSG_ERROR else None
                    got[expected[seq]] = error if error is not None else message
            answers.extend(got[i] for i in range(len(window)))
        return answers

    def dump(self, msg_type: int, body: bytes) -> Iterator[bytes]:
        """The messages of one dump request."""
        return self._replies(self._send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body))


class RtnlSocket(NetlinkSocket):
    """NETLINK_ROUTE: links, addresses and namespace ids."""

    def __init__(self, timeout: float = 5.0) -> None:
        super().__init__(socket.NETLINK_ROUTE, timeout)
        # The last link_stats: each message past its header (a link's index and counters, the
        # same bytes while they did not move), parsed.
        self._stats: dict[bytes, tuple[int, LinkCounters | None]] = {}

    def dump_links(self, target_nsid: int | None = None, stats: bool = True) -> list[Link]:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        if not stats:
            body += _attr(IFLA["IFLA_EXT_MASK"], struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
        if target_nsid is not None:
            body += _attr(IFLA["IFLA_IF_NETNSID"], struct.pack("=i", target_nsid))
        seq = self._send(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, body)
        # Some kernels send IFLA_STATS64 whatever the mask says (6.18 does): not read then.
        return [parse_link(m, counters=stats) for m in self._replies(seq)]

    def link_names(self, peers: Sequence[tuple[int, int]]) -> list[str | None]:
        """Names of links given as (ifindex, nsid): each looked up in the namespace the host
        knows by that id, without entering it. None where the link (or the id) is gone.
        Raises NetlinkError(EPERM) without CAP_NET_ADMIN."""
        skip_stats = _attr(IFLA["IFLA_EXT_MASK"], struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
        bodies = [
            _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
            + skip_stats
            + _attr(IFLA["IFLA_IF_NETNSID"], struct.pack("=i", nsid))
            for index, nsid in peers
        ]
        names: list[str | None] = []
        for answer in self._batch(RTM_GETLINK, bodies):
            if isinstance(answer, NetlinkError):
                # ENODEV: no such link; EINVAL: no namespace has that id any more.
                if answer.errno in (errno.ENODEV, errno.EINVAL):
                    names.append(None)
                    continue
                raise answer
            start = _HEADER.size + _IFINFO.size
            names.append(_text(answer, _find(answer, start, IFLA["IFLA_IFNAME"])))
        return names

    def links(self, indexes: Sequence[int]) -> list[Link | None]:
        """The links of this namespace with these ifindexes, each as a dump gives it without
        counters (RTM_GETLINK each, batched); None for one gone (ENODEV)."""
        skip_stats = _attr(IFLA["IFLA_EXT_MASK"], struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
        bodies = [_IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + skip_stats for index in indexes]
        found: list[Link | None] = []
        for answer in self._batch(RTM_GETLINK, bodies):
            if isinstance(answer, NetlinkError):
                if answer.errno == errno.ENODEV:
                    found.append(None)
                    continue
                raise answer
            found.append(parse_link(answer, counters=False))
        return found

    def link_stats(self) -> dict[int, LinkCounters]:
        """Every link's counters by ifindex: one RTM_GETSTATS dump asking IFLA_STATS_LINK_64
        only, a fraction of a link dump's bytes and parsing (the names, kinds and masters that
        do not move with traffic are read by dump_links, on change).

        A link whose counters did not move keeps the very same LinkCounters as the last dump,
        told apart by their message's bytes: readings (metrics.Renderer) and block keys then
        compare by identity, not by eight Python-level field comparisons a link."""
        body = _IFSTATS.pack(socket.AF_UNSPEC, 0, 1 << (IFLA_STATS_LINK_64 - 1))
        found: dict[int, LinkCounters] = {}
        last, kept = self._stats, {}
        for message in self.dump(RTM_GETSTATS, body):
            unsequenced = message[_HEADER.size :]  # the header's sequence number differs
            index, counters = kept[unsequenced] = last.get(unsequenced) or parse_stats(message)
            if counters is not None:
                found[index] = counters
        self._stats = kept
        return found

    def addresses(self) -> list[bytes]:
        """This namespace's own IPv4 and IPv6 addresses, packed (4 or 16 bytes): one
        RTM_GETADDR dump. Needs no privilege."""
        body = _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        found: list[bytes] = []
        for message in self.dump(RTM_GETADDR, body):
            if len(message) < _HEADER.size + _IFADDR.size:
                raise _malformed(f"RTM_NEWADDR of {len(message)} bytes")
            family = message[_HEADER.size]
            attrs = _attrs(message, _HEADER.size + _IFADDR.size, len(message))
            # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on point-to-point links.
            span = attrs.get(IFA["IFA_LOCAL"]) or attrs.get(IFA["IFA_ADDRESS"])
            size = {int(socket.AF_INET): 4, int(socket.AF_INET6): 16}.get(family)
            if span is not None and size is not None and span[1] - span[0] == size:
                found.append(bytes(message[span[0] : span[1]]))
        return found

    def nsids_of(self, netns_fds: Sequence[int]) -> list[int | None]:
        """The ids this socket's namespace gives the namespaces behind `netns_fds`
        (RTM_GETNSID); None for one it has given no id yet (NETNSA_NSID_NOT_ASSIGNED)."""
        bodies = [
            _RTGEN.pack(socket.AF_UNSPEC) + _attr(NETNSA["NETNSA_FD"], struct.pack("=I", fd))
            for fd in netns_fds
        ]
        nsids: list[int | None] = []
        for answer in self._batch(RTM_GETNSID, bodies):
            if isinstance(answer, NetlinkError):
                raise answer
            span = _find(answer, _HEADER.size + _RTGEN.size, NETNSA["NETNSA_NSID"])
            nsid = _i32(answer, span)
            nsids.append(None if nsid is None or nsid < 0 else nsid)
        return nsids


@dataclass(frozen=True)
class LinkChanges:
    """What the link change feed said since it was last drained."""

    messages: int  # link and namespace-id notifications
    lost: bool  # the socket overflowed (ENOBUFS): some were dropped, nothing can be trusted
    nsids: frozenset[int]  # namespace ids assigned or released
    # Namespaces (by the id this one gives them) where a link changed: a veth's far end
    # renamed, moved out or in. Empty where NETLINK_LISTEN_ALL_NSID was refused.
    peer_nsids: frozenset[int] = frozenset()
    # The ifindexes of this namespace's links that were notified (created, deleted, changed).
    indexes: frozenset[int] = frozenset()


class LinkEvents:
    """rtnetlink's multicast notifications of links (RTNLGRP_LINK: created, deleted, or any
    attribute changed: master, operstate, peer, name) and of namespace ids (RTNLGRP_NSID), on a
    socket of their own, drained without blocking. Open it BEFORE the dump it keeps current: a
    change made between the two is then seen twice, never missed."""

    def __init__(self, rcvbuf: int = 1 << 20) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, 0))
            for group in (RTNLGRP_LINK, RTNLGRP_NSID):
                self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        # A veth's far end moved from one container's namespace to another's notifies those
        # two namespaces, never this one: heard only from there.
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)
            self.all_namespaces = True
        except OSError:  # EPERM without CAP_NET_BROADCAST: the resync covers those changes
            self.all_namespaces = False

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> LinkChanges:
        """Everything queued since the last drain. Raises NetlinkError on a malformed message."""
        messages, lost, nsids, peers, indexes = 0, False, set[int](), set[int](), set[int]()
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                lost = True  # reported once; what is queued after it is still read
                continue
            # The id of the namespace the messages came from: none (or -1) for this one.
            source = -1
            for level, kind, value in ancillary:
                if (level, kind) == (SOL_NETLINK, NETLINK_LISTEN_ALL_NSID) and len(value) >= 4:
                    source = struct.unpack_from("=i", value)[0]
            count = link_changes(data, nsids, indexes if source < 0 else None)
            messages += count
            if count and source >= 0:
                peers.add(source)
        return LinkChanges(messages, lost, frozenset(nsids), frozenset(peers), frozenset(indexes))
