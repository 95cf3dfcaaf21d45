"""One reading of both firewall backends, shared by the nat and firewall collectors: each
backend dumped once, its nat rules (nat_rules.py) and its filter rules (filter_rules.py)
decoded from the same dumps. A tick takes it at most once (tick.py): whichever of the two
collectors runs first reads, the other reuses it.

- nf_tables over netlink (one socket, kept open): the ip and ip6 families' chains and rules,
  the inet tables' only where one has a forward hook; the filter rules are decoded again only
  when the ruleset generation changed.
- ip_tables / ip6_tables ("legacy") as libiptc reads them, each table only when the kernel
  already has it (asking for one would load its module: a change to the host).

A backend that cannot be read is part of the reading (FirewallBackend.readable False, its
error and the capabilities it lacks), never an exception: each collector says what it means
for its own verdicts.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from pathlib import Path

from exporter.readers.capabilities import lacking
from exporter.readers.filter_rules import (
    NF_INET_FORWARD,
    FilterCache,
    FilterTables,
    legacy_filter,
    nft_filter,
    set_indices,
    with_set_names,
)
from exporter.readers.iptables import ipset_names
from exporter.readers.nat_rules import NatRule, nft_nat, read_legacy
from exporter.readers.netfilter_base import (
    FirewallBackend,
    FirewallUnreadable,
    attr,
    legacy_table,
    legacy_tables,
)
from exporter.readers.nfnetlink import NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NftSocket


def read_nftables_with_filter(
    sock: NftSocket, cache: FilterCache | None = None
) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
    """read_nftables, and from the same dumps the filter chains and rules the forward hook
    reaches (IPv4 and IPv6); with a cache, decoded again only when the ruleset generation
    changed (asked before and after the dumps: the same both times, the dumps are of it)."""
    try:
        before = sock.generation() if cache is not None else None
        chains = sock.chains()
        rules = sock.rules(NFPROTO_IPV4) + sock.rules(NFPROTO_IPV6)
        # inet tables (firewalld's) filter both families' forwarded packets too; their rules
        # are dumped only where such a table has a forward-hook chain.
        inet = any(
            c.family == NFPROTO_INET
            and attr(c.attrs.get_attr("NFTA_CHAIN_HOOK"), "NFTA_HOOK_HOOKNUM") == NF_INET_FORWARD
            for c in chains
        )
        inet_rules = sock.rules(NFPROTO_INET) if inet else []
        backend, nat = nft_nat(chains, rules)
        after = sock.generation() if cache is not None else None
        steady = before is not None and before == after
        if cache is not None and steady and cache.generation == before and cache.tables:
            return backend, nat, cache.tables
        tables = [nft_filter(sock, chains, rules, f) for f in (NFPROTO_IPV4, NFPROTO_IPV6)]
        if inet:
            tables += [
                nft_filter(sock, chains, inet_rules, f, NFPROTO_INET)
                for f in (NFPROTO_IPV4, NFPROTO_IPV6)
            ]
    except OSError as exc:  # EPERM without CAP_NET_ADMIN; NetlinkError for a bad answer
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        raise FirewallUnreadable(
            f"nf_tables: {exc.strerror or exc}", lacking("CAP_NET_ADMIN") if refused else ()
        ) from exc
    found = named_sets(
        FilterTables(
            chains=tuple(c for t in tables for c in t.chains),
            rules=tuple(r for t in tables for r in t.rules),
        )
    )
    if cache is not None:
        cache.generation, cache.tables = (before, found) if steady else (None, None)
    return backend, nat, found


def read_legacy_with_filter(
    procfs: str | Path,
) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
    """read_legacy, and ip_tables' and ip6_tables' filter tables, each only when the kernel
    already has it (asking for one would load iptable_filter)."""
    backend, nat = read_legacy(procfs)
    tables = []
    if "filter" in legacy_tables(procfs):
        tables.append(legacy_filter(legacy_table("filter", "ipv4"), "ipv4"))
    if "filter" in legacy_tables(procfs, "ip6_tables_names"):
        tables.append(legacy_filter(legacy_table("filter", "ipv6"), "ipv6"))
    return (
        backend,
        nat,
        named_sets(
            FilterTables(
                chains=tuple(c for t in tables for c in t.chains),
                rules=tuple(r for t in tables for r in t.rules),
            )
        ),
    )


def named_sets(tables: FilterTables) -> FilterTables:
    """Set matches name their ipset by index: the names, asked of the kernel as iptables asks
    (only where a rule has a set match). Unanswered (no CAP_NET_RAW, no ipset module loaded)
    the index stays, and the judge treats the set as one it does not know."""
    indices = set_indices((tables,))
    if not indices:
        return tables
    try:
        names = ipset_names(indices)
    except OSError:
        return tables
    return with_set_names(tables, names)


@dataclass(frozen=True)
class NetfilterReading:
    """Both backends as one reading found them: each backend (readable or why not), the nat
    rules and the filter chains and rules of those that could be read."""

    backends: tuple[FirewallBackend, ...]
    nat_rules: tuple[NatRule, ...]
    filter: FilterTables

    @property
    def readable(self) -> bool:
        """Some backend could be read, or none could for want of a privilege (reported as
        such, not failed)."""
        return any(b.readable or b.missing_capabilities for b in self.backends)


class NetfilterReader:
    """The host's firewall, read through one nf_tables socket kept open and a filter cache;
    one reading at a time (a socket is not shared mid-answer)."""

    def __init__(self, procfs: str | Path = "/proc", timeout: float = 5.0) -> None:
        self.procfs = procfs
        self._timeout = timeout
        self._lock = threading.Lock()
        self._nft: NftSocket | None = None
        self._cache = FilterCache()

    def close(self) -> None:
        with self._lock:
            self._close_socket()

    def _close_socket(self) -> None:
        if self._nft is not None:
            self._nft.close()
            self._nft = None

    def read(self) -> NetfilterReading:
        with self._lock:
            backends: list[FirewallBackend] = []
            nat: list[NatRule] = []
            tables: list[FilterTables] = []
            for name in ("nftables", "legacy"):
                try:
                    backend, found, filter_tables = (
                        self._read_nftables() if name == "nftables" else self._read_legacy()
                    )
                except FirewallUnreadable as exc:
                    needs = exc.missing_capabilities
                    backends.append(FirewallBackend(name, False, str(exc), 0, (), needs))
                    continue
                backends.append(backend)
                nat.extend(found)
                tables.append(filter_tables)
            return NetfilterReading(
                tuple(backends),
                tuple(nat),
                FilterTables(
                    chains=tuple(c for t in tables for c in t.chains),
                    rules=tuple(r for t in tables for r in t.rules),
                ),
            )

    def _read_nftables(self) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
        if self._nft is None:
            self._nft = NftSocket(self._timeout)
        try:
            return read_nftables_with_filter(self._nft, self._cache)
        except FirewallUnreadable:
            self._close_socket()  # a socket left mid-answer by an error is not reused
            raise

    def _read_legacy(self) -> tuple[FirewallBackend, list[NatRule], FilterTables]:
        return read_legacy_with_filter(self.procfs)
