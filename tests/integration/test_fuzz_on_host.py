"""Hostile input checked by the real things: every link this host's kernel lists parsed as
pyroute2 parses it, and the nastiest expositions through promtool."""

from __future__ import annotations

import dataclasses
import socket
import struct
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from exporter.metrics import render
from exporter.readers.netlink import (
    PORT_STATES,
    LinkCounters,
    parse_link,
)
from tests.fuzzing import FUZZ, HEADER, IFINFO, message, mutated
from tests.helpers import parse
from tests.unit.test_fuzz_exposition import (
    HANDFUL,
    WRITERS,
    distinct_from,
    hostile_host,
    nat_and_layers,
    recorded,
    renamed,
    samples,
)
from tests.unit.test_fuzz_rtnetlink import RTM_NEWLINK, parses_or_refuses

pytestmark = pytest.mark.integration

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


@FUZZ
@given(data=mutated(st.deferred(lambda: st.sampled_from(host_link_messages()))))
def test_mutated_links_of_this_host_parse_or_raise(data: bytes) -> None:
    parses_or_refuses(lambda: parse_link(data))


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
