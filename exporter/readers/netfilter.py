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
from dataclasses import dataclass, field
from pathlib import Path

from exporter.readers.capabilities import lacking
from exporter.readers.filter_rules import (
    NF_INET_FORWARD,
    FilterDecodes,
    FilterTables,
    legacy_filter,
    nft_filter,
    set_indices,
    with_set_names,
)
from exporter.readers.iptables import TableBlob, ipset_names
from exporter.readers.nat_rules import (
    Counts,
    NatCounters,
    NatDecodes,
    NatRule,
    RuleKey,
    nft_counts,
    nft_nat,
    read_legacy_counted,
)
from exporter.readers.netfilter_base import (
    FirewallBackend,
    FirewallUnreadable,
    LegacyCache,
    attr,
    legacy_table_blob,
    legacy_tables,
)
from exporter.readers.nfnetlink import NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6, NftSocket


@dataclass
class NftCache:
    """The last nf_tables reading and the ruleset generation it was read at. The kernel bumps
    the generation with every change of a table, chain, rule or set element: while it stands
    the rules are the same, and only their counters are read again (nft_counts)."""

    generation: int | None = None
    backend: FirewallBackend | None = None
    nat: tuple[NatRule, ...] = ()
    keys: list[RuleKey] = field(default_factory=list)
    tables: FilterTables | None = None
    # Kept across generations: a changed ruleset decodes only its rules that changed.
    decodes: NatDecodes = field(default_factory=NatDecodes)
    filter_decodes: FilterDecodes = field(default_factory=FilterDecodes)


@dataclass(frozen=True)
class BackendReading:
    """One backend as one reading found it: its nat rules and their counters (in the rules'
    order), its filter chains and rules."""

    backend: FirewallBackend
    nat: tuple[NatRule, ...]
    counts: Counts
    filter: FilterTables


def read_nftables_with_filter(sock: NftSocket, cache: NftCache | None = None) -> BackendReading:
    """read_nftables, and from the same dumps the filter chains and rules the forward hook
    reaches (IPv4 and IPv6). With a cache, while the ruleset generation stands (asked before
    and after the dumps: the same both times, the dumps are of it), the rules are the last
    reading's very objects and only the nat rules' counters are dumped again."""
    try:
        before = sock.generation() if cache is not None else None
        if cache is not None and before is not None and cache.generation == before:
            steady = _steady(sock, cache, before)
            if steady is not None:
                return steady
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
        backend, nat, counts, keys = nft_nat(
            chains, rules, cache.decodes if cache is not None else None
        )
        after = sock.generation() if cache is not None else None
        kept = cache.filter_decodes if cache is not None else None
        tables = [
            nft_filter(sock, chains, rules, f, decodes=kept) for f in (NFPROTO_IPV4, NFPROTO_IPV6)
        ]
        if inet:
            tables += [
                nft_filter(sock, chains, inet_rules, f, NFPROTO_INET, decodes=kept)
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
    reading = BackendReading(backend, tuple(nat), counts, found)
    if cache is not None:
        if before is not None and before == after:
            cache.generation, cache.keys = before, keys
            cache.backend, cache.nat, cache.tables = backend, reading.nat, found
        else:
            cache.generation = None
    return reading


def _steady(sock: NftSocket, cache: NftCache, generation: int) -> BackendReading | None:
    """The cached reading with its counters read again, if the generation stood meanwhile."""
    if cache.backend is None or cache.tables is None:
        return None
    counts = nft_counts(sock, cache.keys)
    if counts is None or sock.generation() != generation:
        return None
    return BackendReading(cache.backend, cache.nat, counts, cache.tables)


def read_legacy_with_filter(procfs: str | Path, cache: LegacyCache | None = None) -> BackendReading:
    """read_legacy, and ip_tables' and ip6_tables' filter tables, each only when the kernel
    already has it (asking for one would load iptable_filter). With a cache, a table is
    decoded again only when its rules changed (its counters aside)."""
    cache = cache if cache is not None else LegacyCache()
    backend, nat, counts = read_legacy_counted(procfs, cache)
    tables = []
    for family, names in (("ipv4", "ip_tables_names"), ("ipv6", "ip6_tables_names")):
        if "filter" in legacy_tables(procfs, names):
            blob = legacy_table_blob("filter", family)
            tables.append(cache.made("filter", blob, _legacy_filter_tables))
    # The set names asked every time, as before: renaming a set changes no rule.
    found = named_sets(
        tables[0]
        if len(tables) == 1
        else FilterTables(
            chains=tuple(c for t in tables for c in t.chains),
            rules=tuple(r for t in tables for r in t.rules),
        )
    )
    return BackendReading(backend, tuple(nat), counts, found)


def _legacy_filter_tables(table: TableBlob) -> FilterTables:
    return legacy_filter(table.chains(), table.family)


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
    rules and the filter chains and rules of those that could be read, and the nat rules'
    counters apart. While no rule changed, backends, nat_rules and filter are the last
    reading's very objects: only nat_counters is new."""

    backends: tuple[FirewallBackend, ...]
    nat_rules: tuple[NatRule, ...]
    filter: FilterTables
    nat_counters: NatCounters = field(default_factory=NatCounters)

    @property
    def readable(self) -> bool:
        """Some backend could be read, or none could for want of a privilege (reported as
        such, not failed)."""
        return any(b.readable or b.missing_capabilities for b in self.backends)


class NetfilterReader:
    """The host's firewall, read through one nf_tables socket kept open and caches of what
    each backend's rules decoded to; one reading at a time (a socket is not shared
    mid-answer)."""

    def __init__(self, procfs: str | Path = "/proc", timeout: float = 5.0) -> None:
        self.procfs = procfs
        self._timeout = timeout
        self._lock = threading.Lock()
        self._nft: NftSocket | None = None
        self._cache = NftCache()
        self._legacy = LegacyCache()
        self._last: NetfilterReading | None = None

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
            counts: Counts = []
            tables: list[FilterTables] = []
            for name in ("nftables", "legacy"):
                try:
                    found = self._read_nftables() if name == "nftables" else self._read_legacy()
                except FirewallUnreadable as exc:
                    needs = exc.missing_capabilities
                    backends.append(FirewallBackend(name, False, str(exc), 0, (), needs))
                    continue
                backends.append(found.backend)
                nat.extend(found.nat)
                counts.extend(found.counts)
                tables.append(found.filter)
            reading = self._last = self._same_as_last(
                NetfilterReading(
                    tuple(backends),
                    tuple(nat),
                    FilterTables(
                        chains=tuple(c for t in tables for c in t.chains),
                        rules=tuple(r for t in tables for r in t.rules),
                    ),
                    NatCounters(tuple(p for p, _ in counts), tuple(b for _, b in counts)),
                )
            )
            return reading

    def _same_as_last(self, reading: NetfilterReading) -> NetfilterReading:
        """The reading, with each part equal to the last reading's replaced by that very
        object: whoever holds them can tell "unchanged" by identity. Cheap while nothing
        changed: the backends' caches gave the same rule objects, compared by identity."""
        last = self._last
        if last is None:
            return reading
        return NetfilterReading(
            last.backends if reading.backends == last.backends else reading.backends,
            last.nat_rules if reading.nat_rules == last.nat_rules else reading.nat_rules,
            last.filter if reading.filter == last.filter else reading.filter,
            last.nat_counters
            if reading.nat_counters == last.nat_counters
            else reading.nat_counters,
        )

    def _read_nftables(self) -> BackendReading:
        if self._nft is None:
            self._nft = NftSocket(self._timeout)
        try:
            return read_nftables_with_filter(self._nft, self._cache)
        except FirewallUnreadable:
            self._close_socket()  # a socket left mid-answer by an error is not reused
            raise

    def _read_legacy(self) -> BackendReading:
        return read_legacy_with_filter(self.procfs, self._legacy)
