"""What the nat and filter rule readers share: a backend's facts and errors, the nf_tables
expression helpers both decoders use, and the legacy (ip_tables) table access.

Read-only. Both backends, IPv4 and IPv6: nf_tables' ip and ip6 families, ip_tables and
ip6_tables (/proc/net/ip6_tables_names).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from exporter.readers.capabilities import lacking
from exporter.readers.iptables import TableBlob, read_table_blob
from exporter.readers.nfnetlink import NFPROTO_IPV4, NFPROTO_IPV6


@dataclass(frozen=True)
class FirewallBackend:
    """What one backend holds: its nat rules (all, not only ours), its chains, or why it could
    not be read."""

    name: str
    readable: bool
    error: str | None
    nat_rules: int
    docker_chains: tuple[str, ...]  # "table/chain" of the chains Docker made there
    # Unreadable for lack of these (empty: for another reason, such as missing libraries).
    missing_capabilities: tuple[str, ...] = ()
    # The same for IPv6 (ip6_tables; nf_tables' ip6 family): nat rules, Docker's chains.
    nat_rules_ipv6: int = 0
    docker_chains_ipv6: tuple[str, ...] = ()


DOCKER_CHAIN_PREFIX = "DOCKER"
# Tables Docker 29's nftables firewall backend creates.
DOCKER_NFT_TABLES = ("docker-bridges",)
PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
FAMILIES = {NFPROTO_IPV4: "ipv4", NFPROTO_IPV6: "ipv6"}
# Where -s and -d sit in the network header, and how long an address is: (source, destination,
# width). The IPv4 protocol byte is compared as a payload (offset 9); IPv6's next header is
# compared as meta l4proto by iptables-nft and nft alike, so it needs no offset here.
ADDRESS_OFFSETS = {NFPROTO_IPV4: (12, 16, 4), NFPROTO_IPV6: (8, 24, 16)}


class FirewallUnreadable(Exception):
    def __init__(self, reason: str, missing_capabilities: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.missing_capabilities = missing_capabilities


def attr(nla: Any, name: str) -> Any:
    return nla.get_attr(name) if nla is not None else None


def data_value(data: Any) -> bytes:
    """NFTA_DATA_VALUE out of an NFTA_*_DATA nest, as bytes."""
    raw = attr(data, "NFTA_DATA_VALUE")
    if isinstance(raw, str):  # pyroute2 renders some blobs as "aa:bb:..."
        return bytes.fromhex(raw.replace(":", ""))
    return bytes(raw or b"")


def blob_bytes(blob: Any) -> bytes:
    if isinstance(blob, str):
        return bytes.fromhex(blob.replace(":", ""))
    return bytes(blob or b"")


def interface_name(value: bytes) -> str:
    # iptables-nft compares "docker0\0" for `-o docker0` and "br-" (no NUL) for `-o br-+`.
    return value.split(b"\0", 1)[0].decode(errors="replace") + ("" if b"\0" in value else "+")


def address_prefix(value: bytes, mask: bytes | None, width: int = 4) -> str | None:
    """A compared address prefix: iptables-nft compares the prefix's whole bytes, or the
    address masked by a bitwise. width: 4 (IPv4) or 16 (IPv6)."""
    bits = sum(bin(b).count("1") for b in mask) if mask else len(value) * 8
    if len(value) > width or bits > width * 8:
        return None  # compared with more than an address holds: not a -s/-d we know
    number = int.from_bytes(value.ljust(width, b"\0"), "big")
    if width == 16:
        return str(ipaddress.IPv6Network((number, bits), strict=False))
    return str(ipaddress.IPv4Network((number, bits), strict=False))


def legacy_tables(procfs: str | Path, names: str = "ip_tables_names") -> set[str]:
    if not Path(procfs, "net").is_dir():
        raise FirewallUnreadable(f"iptables-legacy: no {procfs}/net: is --path.procfs a procfs?")
    try:
        return set(Path(procfs, "net", names).read_text().split())
    except FileNotFoundError:
        return set()  # ip_tables (ip6_tables) is not loaded: no legacy rules exist
    except PermissionError as exc:  # mode 0440, root's
        raise FirewallUnreadable(
            f"iptables-legacy: {exc.filename}: permission denied",
            lacking("CAP_DAC_READ_SEARCH"),
        ) from exc


def legacy_table_blob(name: str, family: str) -> TableBlob:
    try:
        return read_table_blob(name, family)
    except OSError as exc:
        # The raw socket needs CAP_NET_RAW, the table CAP_NET_ADMIN.
        refused = exc.errno in (errno.EPERM, errno.EACCES)
        tool = "ip6tables-legacy" if family == "ipv6" else "iptables-legacy"
        raise FirewallUnreadable(
            f"{tool}: {exc.strerror or exc}",
            lacking("CAP_NET_RAW", "CAP_NET_ADMIN") if refused else (),
        ) from exc


T = TypeVar("T")


class LegacyCache:
    """What was made of each legacy table at its last change, and the table then minus its
    counters: ip_tables says nothing of a change (no generation, no event), and its counters
    change with every packet, so each reading compares the table with its counters zeroed
    (a memcmp), and decodes it again only when a rule or chain changed."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], tuple[bytes, object]] = {}

    def made(self, name: str, table: TableBlob, make: Callable[[TableBlob], T]) -> T:
        key, rules = (name, table.family), table.rules_key()
        found = self._made.get(key)
        if found is not None and found[0] == rules:
            return cast(T, found[1])
        value = make(table)
        self._made[key] = (rules, value)
        return value


# -- nf_tables' register file -------------------------------------------------------------------
#
# NFT_REG_1..4 (16 bytes each) and NFT_REG32_00..15 (4 bytes each) name one 64-byte file:
# a write to one forgets every register it overlaps, so no later compare reads what was there
# before as the new value. Registers holds what each register was last loaded with.
Registers = dict[Any, tuple[Any, ...]]
_REG32_BASE, _REG32_COUNT = 8, 16
_REGISTER_NAMES = {
    **{f"NFT_REG_{n}": n for n in range(1, 5)},
    **{f"NFT_REG32_{n:02d}": _REG32_BASE + n for n in range(_REG32_COUNT)},
}


def _slots_of(reg: int) -> frozenset[int]:
    start = (reg - 1) * 4 if reg <= 4 else reg - _REG32_BASE
    return frozenset(range(start, min(start + 4, _REG32_COUNT)))


# Every register, by number and by pyroute2's name, with its slots: worked out once.
_SLOTS: dict[Any, frozenset[int]] = {
    reg: _slots_of(reg) for reg in (*range(1, 5), *range(_REG32_BASE, _REG32_BASE + _REG32_COUNT))
}
_SLOTS.update({name: _SLOTS[reg] for name, reg in _REGISTER_NAMES.items()})
_NONE: frozenset[int] = frozenset()


def register_slots(reg: Any) -> frozenset[int]:
    """The 32-bit slots a register names (a load into a 32-bit register may run past it: as
    far as a 16-byte value goes, to be safe); empty for none (the verdict register, garbage).
    A register is its number, or its name as pyroute2 gives it (NFT_REG_1, NFT_REG32_00)."""
    try:
        return _SLOTS.get(reg, _NONE)
    except TypeError:  # unhashable: not a register
        return _NONE


def register_write(registers: Registers, dreg: Any, value: tuple[Any, ...] | None) -> None:
    """dreg now holds value (None: something unknown); the registers it overlaps are
    forgotten. A dreg that names no register forgets them all: where the write went is
    unknown."""
    written = register_slots(dreg)
    if not written:
        registers.clear()
        return
    for other in [r for r in registers if register_slots(r) & written]:
        del registers[other]
    registers[dreg] = value if value is not None else ("unknown",)


# Expressions that write no register: they match, count or act on the packet.
NO_REGISTER_WRITES = ("match", "target", "counter", "log", "limit", "quota", "reject", "masq")


def forget_unknown_write(registers: Registers, name: str, data: Any) -> None:
    """An expression a decoder does not understand: what it may have written is unknown (its
    destination register where one is read, else every register)."""
    if name in NO_REGISTER_WRITES:
        return
    if name == "lookup" and not attr(data, "NFTA_LOOKUP_DREG"):
        return  # a set lookup reads a register and writes none
    dreg = next(
        (attr(data, key) for key in ("NFTA_LOOKUP_DREG", "NFTA_FIB_DREG", "NFTA_CT_DREG")
         if attr(data, key)),
        None,
    )  # fmt: skip
    register_write(registers, dreg, None)
