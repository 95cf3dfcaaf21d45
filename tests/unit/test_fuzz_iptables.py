"""Hostile input into the ip_tables and ip6_tables entry parsers: entries built as the kernel
lays them out decode as written, and hostile or mutated blobs parse or raise IptablesError."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from exporter.readers import iptables
from exporter.readers.nat_rules import decode_nat_target
from exporter.readers.nfnetlink import NFPROTO_IPV6
from tests.fuzzing import FUZZ, ipt_extension, mutated


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
