"""The conntrack collector's source: the table's size and counters from procfs, then one
ctnetlink dump, each entry attributed through the addresses of the tick's containers and of
the host. Nothing is confirmed by a second reading: nothing here is judged broken."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from exporter.collectors import Source
from exporter.collectors.conntrack.facts import HOST, NAME, ConntrackDump, ConntrackFacts, DumpRow
from exporter.collectors.conntrack.options import MAX_ENTRIES
from exporter.logonce import ChangeLog
from exporter.readers.capabilities import lacking
from exporter.readers.ctnetlink import (
    AF_UNSPEC,
    ConntrackSocket,
    ConntrackTable,
    DumpCounts,
    DumpInterrupted,
    dump_families,
    family_name,
    read_table,
)
from exporter.readers.docker_api import RUNNING_STATES, ContainerRecord, DockerUnavailable
from exporter.readers.netlink import NetlinkError, RtnlSocket
from exporter.settings import Settings
from exporter.tick import Tick

log = logging.getLogger(__name__)


def _packed(text: str) -> bytes | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, text)
        except OSError:
            continue
    return None


def container_owners(containers: tuple[ContainerRecord, ...]) -> dict[bytes, str]:
    """Each running container's IPv4 and IPv6 addresses, packed, to its name. An address two
    containers claim (only on networks that overlap, such as macvlan) goes to the first by name."""
    owners: dict[bytes, str] = {}
    for c in sorted(containers, key=lambda c: c.name):
        if c.state not in RUNNING_STATES:
            continue
        for text in (*c.addresses, *c.ipv6_addresses):
            packed = _packed(text)
            if packed is not None:
                owners.setdefault(packed, c.name)
    return owners


class ConntrackSource:
    def __init__(
        self,
        procfs: str | Path,
        timeout: float,
        max_entries: int,
        engine_wait: float | None = None,
    ) -> None:
        self.procfs = procfs
        self.timeout = timeout
        self.max_entries = max_entries
        self.engine_wait = engine_wait
        self._log = ChangeLog(log)
        self._sock: ConntrackSocket | None = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def read(self, tick: Tick) -> ConntrackFacts:
        table = read_table(self.procfs)  # an unreadable procfs fails the run
        self._log.update(
            "module",
            None if table is not None else "nf_conntrack is not loaded",
            "no connection tracking on this host: nothing to read",
            "connection tracking found",
        )
        if table is None:
            # No dump either: asking ctnetlink would make the kernel load nf_conntrack.
            return ConntrackFacts(table=None, dump=None)
        containers: tuple[str, ...] | None = None
        owners = dict.fromkeys(self._host_addresses(), HOST)
        engine_error: str | None = None
        try:
            records = tick.engine(self.engine_wait).containers
        except DockerUnavailable as exc:
            engine_error = str(exc)
        else:
            mine = container_owners(records)
            owners.update(mine)
            containers = tuple(sorted(set(mine.values())))
        self._log.update(
            "docker",
            engine_error,
            "conntrack entries not attributed to containers: the Engine API is unreadable",
            "conntrack entries attributed to containers again",
            input="docker",
        )
        ipv6 = any(len(a) == 16 and o != HOST for a, o in owners.items())
        dump, error, missing = self._dump(dump_families(ipv6), owners, table)
        return ConntrackFacts(
            table=table,
            dump=dump,
            dump_error=error,
            missing_capabilities=missing,
            containers=containers,
        )

    def _host_addresses(self) -> list[bytes]:
        error: str | None = None
        found: list[bytes] = []
        try:
            rtnl = RtnlSocket(self.timeout)
            try:
                found = rtnl.addresses()
            finally:
                rtnl.close()
        except OSError as exc:
            error = str(exc)
        self._log.update(
            "addresses",
            error,
            "the host's addresses are unreadable: its entries are counted as unknown",
            "the host's addresses readable again",
        )
        return found

    def _dump(
        self, family: int, owners: dict[bytes, str], table: ConntrackTable
    ) -> tuple[ConntrackDump | None, str | None, tuple[str, ...]]:
        """The dump, retried once if the kernel interrupts it; else why there is none."""
        error: str | None = None
        missing: tuple[str, ...] = ()
        counts: DumpCounts | None = None
        for _attempt in range(2):
            try:
                counts = self._count(family, owners)
                break
            except DumpInterrupted as exc:
                error = f"{exc.strerror}, twice in a row"
            except OSError as exc:  # EPERM without CAP_NET_ADMIN; a timeout; a bad answer
                refused = exc.errno in (errno.EPERM, errno.EACCES)
                missing = lacking("CAP_NET_ADMIN") if refused else ()
                error = f"ctnetlink: {exc.strerror or exc}"
                break
        self._log.update(
            "dump",
            None if counts is not None else error,
            f"conntrack dump not read: needs {' and '.join(missing)}"
            if missing
            else "conntrack dump not read",
            "conntrack dump read again",
        )
        if counts is None:
            return None, error, missing
        families = ("ipv4", "ipv6") if family == AF_UNSPEC else (family_name(family),)
        rows = tuple(
            sorted(
                (
                    DumpRow(family_name(fam), orig, reply, proto, state, n)
                    for (fam, orig, reply, proto, state), n in counts.counts.items()
                ),
                key=lambda r: (r.family, r.orig_owner or "", r.reply_owner or "", r.protocol,
                               -1 if r.tcp_state is None else r.tcp_state),
            )
        )  # fmt: skip
        skipped = max(0, table.entries - counts.read) if counts.capped else 0
        return ConntrackDump(families, counts.read, skipped, rows), None, ()

    def _count(self, family: int, owners: dict[bytes, str]) -> DumpCounts:
        if self._sock is None:
            self._sock = ConntrackSocket(self.timeout)
        try:
            counts, reusable = self._sock.count(family, owners, self.max_entries)
        except (OSError, NetlinkError):
            self.close()  # a socket left mid-dump is not reused
            raise
        if not reusable:
            self.close()  # the rest of a capped dump is never read: the kernel drops it
        return counts


def build(settings: Settings) -> Source:
    return ConntrackSource(
        settings.procfs,
        timeout=settings.timeout(NAME),
        max_entries=settings[MAX_ENTRIES],
        engine_wait=settings.call_timeout(NAME),
    )
