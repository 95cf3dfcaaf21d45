"""The network reader's change feed and counters, decoded: RTM_NEWLINK / RTM_DELLINK /
RTM_NEWNSID / RTM_DELNSID notifications counted (and the namespace ids they name), RTM_NEWSTATS
answers read to the counters the veth families export; hostile bytes decode or raise
NetlinkError, nothing else. Messages are built with struct the way the kernel lays them out
(tests/integration/test_network_events.py reads the real kernel's)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.readers.netlink import (
    IFLA_STATS_LINK_64,
    NETNSA,
    STATS64_FIELDS,
    LinkCounters,
    NetlinkError,
    link_changes,
    parse_stats,
)
from tests.fuzzing import FUZZ, HEADER, message, mutated, nla

RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR = 16, 17, 20
RTM_NEWNSID, RTM_DELNSID, RTM_NEWSTATS = 88, 89, 92
IFINFO = struct.Struct("=BxHiII")
IFSTATS = struct.Struct("=BBHII")
RTGEN = struct.Struct("=Bxxx")
# struct rtnl_link_stats64 as 6.x kernels send it: 24 u64 (older ones fewer, newer more).
STATS64 = struct.Struct("=24Q")


def stats_message(index: int, values: tuple[int, ...] | None, extra: bytes = b"") -> bytes:
    body = IFSTATS.pack(0, 0, 0, index, 1 << (IFLA_STATS_LINK_64 - 1))
    if values is not None:
        body += nla(IFLA_STATS_LINK_64, STATS64.pack(*values))
    return message(RTM_NEWSTATS, body + extra)


def nsid_message(kind: int, nsid: int) -> bytes:
    return message(kind, RTGEN.pack(0) + nla(NETNSA["NETNSA_NSID"], struct.pack("=i", nsid)))


def link_message(kind: int, index: int) -> bytes:
    return message(kind, IFINFO.pack(0, 1, index, 0, 0) + nla(3, b"veth0\0"))


def test_stats_are_read_by_name_not_position() -> None:
    values = tuple(range(100, 124))
    index, counters = parse_stats(stats_message(7, values, extra=nla(2, b"\0" * 8)))
    by_name = dict(zip(STATS64_FIELDS, values, strict=False))
    assert index == 7
    assert counters == LinkCounters(
        rx_bytes=by_name["rx_bytes"],
        tx_bytes=by_name["tx_bytes"],
        rx_packets=by_name["rx_packets"],
        tx_packets=by_name["tx_packets"],
        rx_dropped=by_name["rx_dropped"],
        tx_dropped=by_name["tx_dropped"],
        rx_errors=by_name["rx_errors"],
        tx_errors=by_name["tx_errors"],
    )
    assert parse_stats(stats_message(9, None)) == (9, None)


@given(st.lists(st.integers(0, 2**64 - 1), min_size=8, max_size=8), st.booleans())
def test_counters_hash_as_their_values_whichever_copy_was_hashed_first(
    values: list[int], first: bool
) -> None:
    """The hash is kept on the object once made (a block's key): equal counters hash equal,
    and the kept hash is no field (equality, repr and the fact codec see the counters only)."""
    one, two = LinkCounters(*values), LinkCounters(*values)
    hash(one if first else two)
    assert one == two and hash(one) == hash(two) == hash(tuple(values))
    names = [f.name for f in dataclasses.fields(LinkCounters)]
    assert len(names) == 8 and "_hash" not in names
    assert dataclasses.asdict(one) == dict(zip(names, values, strict=True))
    assert "_hash" not in repr(one)
    moved_values = [*values[:-1], values[-1] ^ 1]
    moved = LinkCounters(*moved_values)
    assert moved != one and hash(moved) == hash(tuple(moved_values))


def test_the_feed_counts_link_and_nsid_notifications_and_names_the_ids() -> None:
    datagram = b"".join(
        (
            link_message(RTM_NEWLINK, 5),
            nsid_message(RTM_NEWNSID, 42),
            message(RTM_NEWADDR, b"\0" * 8),  # not subscribed to, and not a link change
            link_message(RTM_DELLINK, 6),
            nsid_message(RTM_DELNSID, 3),
            nsid_message(RTM_NEWNSID, -1),  # NETNSA_NSID_NOT_ASSIGNED: no id to name
        )
    )
    nsids: set[int] = set()
    assert link_changes(datagram, nsids) == 5
    assert nsids == {3, 42}
    assert link_changes(b"", nsids) == 0
    # The links named, for the reader to ask again: both the changed one and the deleted one.
    indexes: set[int] = set()
    assert link_changes(datagram, set(), indexes) == 5
    assert indexes == {5, 6}


def test_a_link_notification_too_short_to_name_its_link_is_refused() -> None:
    short = message(RTM_DELLINK, b"\0" * 8)  # an ifinfomsg is 16 bytes
    assert link_changes(short, set()) == 1  # counted, where no link is asked for
    with pytest.raises(NetlinkError):
        link_changes(short, set(), set())


def seeds() -> list[bytes]:
    return [
        stats_message(3, tuple(range(24))),
        nsid_message(RTM_NEWNSID, 7),
        link_message(RTM_NEWLINK, 4) + nsid_message(RTM_DELNSID, 1),
    ]


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), mutated(st.sampled_from(seeds()), start=20)))
@example(data=stats_message(3, None, extra=nla(IFLA_STATS_LINK_64, b"\0" * 16)))  # cut short
@example(data=message(RTM_NEWSTATS, b"\0" * 6))  # if_stats_msg truncated
@example(data=message(RTM_NEWNSID, RTGEN.pack(0) + nla(NETNSA["NETNSA_NSID"], b"\1")))
@example(data=HEADER.pack(0, RTM_NEWLINK, 0, 0, 0))  # a zero length: must not spin
def test_hostile_feed_and_stats_bytes_decode_or_raise_netlink_error(data: bytes) -> None:
    try:
        index, counters = parse_stats(data)
    except NetlinkError:
        pass
    else:
        assert 0 <= index < 2**32
        if counters is not None:
            assert all(0 <= v < 2**64 for v in dataclasses.astuple(counters))
    nsids: set[int] = set()
    indexes: set[int] = set()
    try:
        count = link_changes(data, nsids, indexes)
    except NetlinkError:
        return
    assert 0 <= count <= len(data) // HEADER.size
    assert all(0 <= n < 2**31 for n in nsids)
    assert len(indexes) <= count and all(-(2**31) <= i < 2**31 for i in indexes)
