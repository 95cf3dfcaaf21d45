"""What the conntrack collector observed: the host's table (procfs) and one dump of it, counted
by who owns each entry's addresses (ctnetlink, attributed through the tick's container list)."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.ctnetlink import ConntrackTable

# The owner of the host's own addresses in DumpRow; Docker container names cannot hold "/".
HOST = "/host"


NAME = "conntrack"  # the collector's name: --collector.conntrack, its series' collector label


@dataclass(frozen=True)
class DumpRow:
    """Entries with the same family, owners, protocol and TCP state. An owner is a container's
    name, HOST, or None (an address no container and not the host has)."""

    family: str  # ipv4, ipv6
    orig_owner: str | None  # of the original direction's source
    reply_owner: str | None  # of the reply direction's source: the original destination after DNAT
    protocol: int  # IP protocol number, 0 if the entry had none
    tcp_state: int | None  # enum tcp_conntrack, for TCP entries
    entries: int


@dataclass(frozen=True)
class ConntrackDump:
    families: tuple[str, ...]  # the families dumped (the kernel's filter)
    read: int
    # Entries not read because of --collector.conntrack.max-entries: the table's count when the
    # dump began, less those read (so, when only IPv4 was dumped, its IPv6 entries too).
    skipped: int
    rows: tuple[DumpRow, ...]


@dataclass(frozen=True)
class ConntrackFacts:
    table: ConntrackTable | None  # None: the kernel tracks no connections here; nothing else
    dump: ConntrackDump | None  # None: refused, failed or interrupted (dump_error says which)
    dump_error: str | None = None
    missing_capabilities: tuple[str, ...] = ()
    # Running containers with an address, whose counts are exported (0 when they hold none);
    # None when the Engine API could not be read: every entry is then unattributed.
    containers: tuple[str, ...] | None = None
