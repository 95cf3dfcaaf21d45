"""The network reader follows rtnetlink's notifications on the real kernel: every change of a
link (added, removed, moved between bridges, set down) and every namespace id given is seen at
the next reading without reading everything again, and that reading equals a from-scratch one;
lost notifications (ENOBUFS) and the resync period mean a full re-read, counted. After the
first dump, a change is applied by asking again only the links it concerns: no dump.

The reader runs in a thread that entered a network namespace of the test's own (dhe-ne-...h),
which stands for the host: the links there change only when the test changes them, so the dumps
and peer lookups it counts are exact while other tests change the real host's links (isolated:
all it asserts is in namespaces it made; the host's /proc and mount tables are only read).
Each veth's far end is in another namespace of the test's (c, d), as a container's would be."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pytest

from exporter.collectors.network.source import NetworkSource
from exporter.readers.netlink import LinkEvents, RtnlSocket
from exporter.readers.network import NetworkReader, NetworkReading
from exporter.readers.procfs import ProcessScan, ProcfsReader
from exporter.tick import Host

pytestmark = [pytest.mark.integration, pytest.mark.isolated]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class OwnHost:
    """Namespaces of the test's own: h (where the reader runs), c and d (veths' far ends)."""

    h: str
    c: str
    d: str
    tag: str
    pool: ThreadPoolExecutor

    def run(self, fn: Callable[[], T]) -> T:
        """fn in the thread that is in h."""
        return self.pool.submit(fn).result(timeout=60)

    def ip(self, *args: str) -> None:
        ip("-n", self.h, *args)

    def name(self, suffix: str) -> str:
        return f"dhe-ne{self.tag}{suffix}"  # at most 15 characters


def _enter(netns: str) -> None:
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).setns
        if setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


@pytest.fixture
def own_host(root: None) -> Iterator[OwnHost]:
    tag = uuid.uuid4().hex[:4]
    names = [f"dhe-ne-{tag}{x}" for x in "hcd"]
    made: list[str] = []
    pool = ThreadPoolExecutor(max_workers=1, initializer=_enter, initargs=(names[0],))
    try:
        for name in names:
            ip("netns", "add", name)
            made.append(name)
            # No IPv6: its autoconfiguration notifies links (RTM_NEWLINK) on its own schedule.
            for conf in ("all", "default"):
                ip("netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1")
        host = OwnHost(h=names[0], c=names[1], d=names[2], tag=tag, pool=pool)
        for bridge in ("b0", "b1"):
            host.ip("link", "add", host.name(bridge), "type", "bridge")
            host.ip("link", "set", host.name(bridge), "up")
        yield host
    finally:
        pool.shutdown()
        for name in made:  # deleting a namespace deletes its links, and both ends of its veths
            ip("netns", "del", name)


def veth(host: OwnHost, suffix: str, into: str, bridge: str | None = "b0") -> str:
    """A veth in h whose far end is eth-<suffix> in `into`, on `bridge`, up."""
    name = host.name(suffix)
    host.ip("link", "add", name, "type", "veth", "peer", "name", f"eth{suffix}", "netns", into)
    if bridge is not None:
        host.ip("link", "set", name, "master", host.name(bridge))
    host.ip("link", "set", name, "up")
    return name


def no_containers(procfs: ProcfsReader) -> ProcessScan:
    """The host's processes without its containers (whose namespaces have no id in h, and
    which other tests start and stop): the readings hold only what the test changes."""
    return dataclasses.replace(procfs.scan(), shims=[])


def fresh(host: OwnHost, procfs: ProcfsReader) -> NetworkReading:
    """A from-scratch reading, by a reader of its own."""

    def read() -> NetworkReading:
        reader = NetworkReader()
        try:
            return reader.read(procfs, no_containers(procfs))
        finally:
            reader.close()

    return host.run(read)


def state(reader: NetworkReader) -> tuple[str | None, int, int]:
    """Why the last reading read everything (None: it did not), dumps and peer lookups so far."""
    return reader.reread, reader.dumps, reader.peer_lookups


def work(reader: NetworkReader) -> tuple[int, int, int]:
    """Dumps, updates and links asked again so far."""
    return reader.dumps, reader.updates, reader.links_asked


def settled(reader: NetworkReader, read: Callable[[], NetworkReading]) -> NetworkReading:
    """Reads until none has dumped or asked a link again for 1.5 s: the notifications the
    kernel defers (linkwatch sends carrier and operstate changes up to a second later) have
    come and been read. Then one more: nothing read, and the very same object."""
    quiet_since, done = time.monotonic(), work(reader)
    for _ in range(200):
        reading = read()
        if work(reader) != done:
            quiet_since, done = time.monotonic(), work(reader)
        elif time.monotonic() - quiet_since >= 1.5:
            assert read() is reading and work(reader) == done
            return reading
        time.sleep(0.05)
    raise AssertionError("the links kept changing")


def test_each_link_change_is_read_at_the_next_run_without_a_full_reread(
    own_host: OwnHost,
) -> None:
    procfs = ProcfsReader()
    reader = NetworkReader()

    def read() -> NetworkReading:
        return own_host.run(lambda: reader.read(procfs, no_containers(procfs)))

    def link(reading: NetworkReading, name: str) -> object:
        return next((x for x in reading.links if x.name == name), None)

    def next_run() -> NetworkReading:
        """The reading right after a change: the links it concerns asked again, no dump."""
        dumps, updates, _ = work(reader)
        reading = read()
        assert reader.reread is None and work(reader)[:2] == (dumps, updates + 1)
        assert reading == fresh(own_host, procfs)
        return reading

    try:
        read()
        assert (reader.reread, reader.dumps) == ("start", 1)
        settled(reader, read)

        # A veth added: its peer (and only it) looked up, found in c.
        added = veth(own_host, "1", own_host.c)
        second = next_run()
        assert reader.peer_lookups == 1
        new = next(x for x in second.links if x.name == added)
        assert new.peer_nsid is not None and new.counters is None
        assert {(p.index, p.name) for p in second.peers} == {(new.peer_index, "eth1")}
        settled(reader, read)

        # Moved to the other bridge: no peer looked up again.
        own_host.ip("link", "set", added, "master", own_host.name("b1"))
        third = next_run()
        bridges = {x.name: x.index for x in third.links if x.kind == "bridge"}
        assert getattr(link(third, added), "master", None) == bridges[own_host.name("b1")]
        settled(reader, read)

        # Set down.
        own_host.ip("link", "set", added, "down")
        fourth = next_run()
        assert getattr(link(fourth, added), "operstate", None) == "down"
        settled(reader, read)

        # A second veth into another namespace, and the first removed.
        other = veth(own_host, "2", own_host.d, bridge="b1")
        own_host.ip("link", "del", added)
        fifth = next_run()
        assert link(fifth, added) is None and link(fifth, other) is not None
        assert settled(reader, read) == fresh(own_host, procfs)
        assert reader.peer_lookups == 2  # one per veth made, never again
    finally:
        own_host.run(reader.close)


def test_a_namespace_id_given_is_notified(own_host: OwnHost) -> None:
    """An id given to a namespace (as when a veth's far end is moved into a container's) comes
    as RTM_NEWNSID with the id: the reader asks the ids it lacked again, and asks again the
    veths whose far end moved, without a dump."""
    procfs = ProcfsReader()
    events = own_host.run(LinkEvents)
    reader = NetworkReader()
    try:
        own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        own_host.ip("netns", "set", own_host.d, "42")
        reading = own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        assert reader.reread is None and reader.dumps == 1
        assert reading == fresh(own_host, procfs)
        changes = own_host.run(events.drain)
        assert (changes.nsids, changes.lost) == (frozenset({42}), False)
        # The far end moved into d: the end left in h is not notified, the moved one is.
        name = own_host.name("3")
        own_host.ip("link", "add", name, "type", "veth", "peer", "name", "eth3")
        own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        own_host.ip("link", "set", "eth3", "netns", own_host.d)
        moved = own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        assert reader.reread is None
        near = next(x for x in moved.links if x.name == name)
        assert near.peer_nsid == 42
        assert [(p.nsid, p.name) for p in moved.peers] == [(42, "eth3")]
        assert moved == fresh(own_host, procfs)

        # From d on to c: only d and c are notified, heard as namespaces h gives an id to.
        ip("-n", own_host.d, "link", "set", "eth3", "netns", own_host.c)
        again = own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        near = next(x for x in again.links if x.name == name)
        assert near.peer_nsid not in (None, 42)
        assert again == fresh(own_host, procfs) and reader.reread is None

        # Renamed inside c: looked up again.
        ip("-n", own_host.c, "link", "set", "eth3", "name", "eth9")
        renamed = own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        assert [p.name for p in renamed.peers] == ["eth9"]
        assert renamed == fresh(own_host, procfs) and reader.reread is None
        # Every change above applied to the links first dumped: never a dump again.
        assert reader.dumps == 1 and reader.updates >= 3
    finally:
        own_host.run(events.close)
        own_host.run(reader.close)


def test_lost_notifications_mean_a_counted_full_reread(own_host: OwnHost) -> None:
    """A receive buffer too small for a burst of link changes overflows (ENOBUFS): the next run
    reads everything again, and the loss and the re-read are counted on the host."""
    source = NetworkSource(timeout=10.0, confirm_after=0.0)
    # The smallest buffer the kernel grants (it doubles what is asked, to at least ~4.5 KB).
    source.reader = NetworkReader(10.0, events_rcvbuf=1)
    host = Host.open()
    try:
        veth(own_host, "4", own_host.c)
        own_host.run(lambda: source.read(host.tick()))
        assert host.changes.rereads("network", "start") == 1
        lookups = source.reader.peer_lookups
        burst = "".join(
            f"link add {own_host.name(f'x{i}')} type veth peer name {own_host.name(f'y{i}')}\n"
            for i in range(40)
        )
        subprocess.run(
            ["ip", "-n", own_host.h, "-batch", "-"], input=burst.encode(), check=True, timeout=60
        )
        own_host.run(lambda: source.read(host.tick()))
        assert source.reader.lost and source.reader.reread == "lost_events"
        assert host.changes.lost_count("network") == 1
        assert host.changes.rereads("network", "lost_events") == 1
        # A full re-read looks every peer up again.
        assert source.reader.peer_lookups > lookups
        facts = own_host.run(lambda: source.sample(host.tick()))[0]
        assert source.reader.reread is None
        assert sum(1 for x in facts.links if x.kind == "veth") == 81
    finally:
        own_host.run(source.close)
        host.close()


def test_the_resync_period_reads_everything_again(own_host: OwnHost) -> None:
    procfs = ProcfsReader()
    now = [0.0]
    reader = NetworkReader(resync_interval=300.0, clock=lambda: now[0])

    def read() -> NetworkReading:
        return own_host.run(lambda: reader.read(procfs, no_containers(procfs)))

    try:
        veth(own_host, "5", own_host.c)
        first = settled(reader, read)
        dumps = reader.dumps
        now[0] = 299.0
        assert read() is first and state(reader) == (None, dumps, 1)
        now[0] = 300.0
        assert read() is first  # equal, so the same reading
        assert state(reader) == ("resync", dumps + 1, 2)
        now[0] = 599.0
        assert read() is first and state(reader) == (None, dumps + 1, 2)
    finally:
        own_host.run(reader.close)


def send_datagrams() -> None:
    """Three UDP datagrams from h to c's end of the veth (nothing listens: c answers each with
    an ICMP port unreachable), in the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(3):
            sock.sendto(b"dhe-ne", ("169.254.77.2", 9))


def test_counters_are_read_apart_and_match_a_link_dump(own_host: OwnHost) -> None:
    """The veths' counters come from RTM_GETSTATS each run, and agree with the link dump's;
    a veth's counters that did not move are the same object as the last run's."""
    procfs = ProcfsReader()
    reader = NetworkReader()
    try:
        name = veth(own_host, "6", own_host.c, bridge=None)  # a bridge port passes IP on
        ip("-n", own_host.c, "link", "set", "eth6", "up")
        ip("-n", own_host.c, "addr", "add", "169.254.77.2/30", "dev", "eth6")
        own_host.ip("addr", "add", "169.254.77.1/30", "dev", name)
        reading = own_host.run(lambda: reader.read(procfs, no_containers(procfs)))
        own_host.run(send_datagrams)
        assert own_host.run(lambda: reader.read(procfs, no_containers(procfs))) is reading
        counters = own_host.run(reader.counters).by_index()
        index = next(x.index for x in reading.links if x.name == name)
        assert set(counters) == {index}  # the veths only

        def dumped() -> object:
            sock = RtnlSocket()
            try:
                return next(x.counters for x in sock.dump_links() if x.index == index)
            finally:
                sock.close()

        after = own_host.run(dumped)
        # Three datagrams out (and ARP), their answers in.
        assert counters[index].tx_packets >= 3 and counters[index].rx_packets >= 1
        assert counters[index] == after  # no traffic since (no IPv6): the same numbers
        # Counters that did not move are the very same object (compared by identity after);
        # moved ones are read anew.
        assert own_host.run(reader.counters).by_index()[index] is counters[index]
        own_host.run(send_datagrams)
        moved = own_host.run(reader.counters).by_index()[index]
        assert moved is not counters[index] and moved.tx_packets >= counters[index].tx_packets + 3
    finally:
        own_host.run(reader.close)
