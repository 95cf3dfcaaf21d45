"""ip_tables and ip6_tables ("iptables-legacy", "ip6tables-legacy") read as libiptc and
libip6tc read them: IPT_SO_GET_INFO and IPT_SO_GET_ENTRIES on a raw socket (IP6T_SO_GET_* on an
AF_INET6 one: the same option numbers at SOL_IPV6), and the kernel's entry blob parsed with
struct.

python-iptables did this through libiptc, libxtables and its match and target modules, which
cost 14 MB of RSS once loaded, and a missing library cost the whole backend. The layouts are
linux/netfilter_ipv4/ip_tables.h's, linux/netfilter_ipv6/ip6_tables.h's and
linux/netfilter/x_tables.h's; integration tests check the rules read here against
python-iptables' and `iptables-legacy -S` / `ip6tables-legacy -S` on the live host.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

IPPROTO_IP = 0
SOL_IPV6 = 41  # IPPROTO_IPV6
IPT_SO_GET_INFO = 64
IPT_SO_GET_ENTRIES = 65
IP6T_SO_GET_INFO = 64  # IP6T_BASE_CTL: the same numbers, at the other level
IP6T_SO_GET_ENTRIES = 65
XT_TABLE_MAXNAMELEN = 32
# Built-in chains by hook number (NF_INET_*).
HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
# struct ipt_getinfo: name, valid_hooks, hook_entry[5], underflow[5], num_entries, size.
_GETINFO = struct.Struct("=32sI5I5III")
# struct ipt_get_entries: name, size, then the entries (8-byte aligned).
_GET_ENTRIES_HEADER = 40
# struct ipt_entry: ipt_ip (src, dst, smsk, dmsk, iniface, outiface, their masks, proto,
# flags, invflags), nfcache, target_offset, next_offset, comefrom, counters (pcnt, bcnt).
_ENTRY = struct.Struct("=4s4s4s4s16s16s16s16sHBBIHHIQQ")
# struct ip6t_entry: ip6t_ip6 (src, dst, smsk, dmsk as in6_addr, iniface, outiface, their masks,
# proto u16, tos, flags, invflags; padded to 136: in6_addr is 4-aligned), nfcache,
# target_offset, next_offset, comefrom, then counters 8-aligned at 152: 168 bytes.
_ENTRY6 = struct.Struct("=16s16s16s16s16s16s16s16sHBBB3xIHHI4xQQ")
IP6T_F_PROTO = 0x01
# struct xt_entry_match / xt_entry_target: size, name[29], revision, then the data.
_EXTENSION = struct.Struct("=H29sB")
IPT_F_GOTO = 0x02  # -g: a jump that does not come back
IP6T_F_GOTO = 0x04
IPT_INV_VIA_IN = 0x01
IPT_INV_VIA_OUT = 0x02
IPT_INV_SRCIP = 0x08
IPT_INV_DSTIP = 0x10
IPT_INV_PROTO = 0x40


class IptablesError(OSError):
    pass


@dataclass(frozen=True)
class Extension:
    name: str
    revision: int
    data: bytes


@dataclass(frozen=True)
class Entry:
    """One rule (or a chain's policy or head) of the table, as the kernel holds it."""

    offset: int
    source: str | None  # "a.b.c.d/len" or "v6::/len", None for any; negated ones too
    source_negated: bool
    destination: str | None
    destination_negated: bool
    in_interface: str | None  # "docker0", "br-+" for a prefix
    in_negated: bool
    out_interface: str | None
    out_negated: bool
    protocol: int  # 0: any
    protocol_negated: bool
    matches: tuple[Extension, ...]
    target: Extension
    packets: int
    bytes: int
    goto: bool = False


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Entry, ...]  # without a built-in chain's policy or a user chain's RETURN
    # Where a jump to it lands (its first entry), and its tail: a built-in chain's policy.
    offset: int = -1
    tail: Entry | None = None


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _prefix(address: bytes, mask: bytes) -> str | None:
    if not any(mask):
        return None
    bits = bin(int.from_bytes(mask, "big")).count("1")
    number = int.from_bytes(address, "big")
    if len(address) == 16:
        return str(ipaddress.IPv6Network((number, bits), strict=False))
    return str(ipaddress.IPv4Network((number, bits), strict=False))


def _interface(name: bytes, mask: bytes) -> str | None:
    """iptables masks the name and its NUL for an exact name, and for `br-+` keeps the "+" in
    the name but masks only "br-"."""
    text = _cstring(name)
    if not text:
        return None
    if text.endswith("+") or len(mask.rstrip(b"\0")) > len(text):
        return text
    return text + "+"


def _unpack4(blob: bytes, offset: int) -> tuple[Any, ...]:
    (
        src, dst, smsk, dmsk, iniface, outiface, iniface_mask, outiface_mask,
        proto, flags, invflags, _nfcache, target_offset, next_offset, _comefrom,
        packets, byte_count,
    ) = _ENTRY.unpack_from(blob, offset)  # fmt: skip
    return (src, dst, smsk, dmsk, iniface, outiface, iniface_mask, outiface_mask, proto,
            invflags, target_offset, next_offset, packets, byte_count,
            bool(flags & IPT_F_GOTO))  # fmt: skip


def _unpack6(blob: bytes, offset: int) -> tuple[Any, ...]:
    (
        src, dst, smsk, dmsk, iniface, outiface, iniface_mask, outiface_mask,
        proto, _tos, flags, invflags, _nfcache, target_offset, next_offset, _comefrom,
        packets, byte_count,
    ) = _ENTRY6.unpack_from(blob, offset)  # fmt: skip
    # The kernel looks at proto only with IP6T_F_PROTO set (ip6_packet_match).
    proto = proto if flags & IP6T_F_PROTO else 0
    return (src, dst, smsk, dmsk, iniface, outiface, iniface_mask, outiface_mask, proto,
            invflags, target_offset, next_offset, packets, byte_count,
            bool(flags & IP6T_F_GOTO))  # fmt: skip


def parse_entries(blob: bytes, family: str = "ipv4") -> list[Entry]:
    """Every entry of an IPT_SO_GET_ENTRIES (family "ipv4") or IP6T_SO_GET_ENTRIES ("ipv6")
    answer, in order. The invflags bits are the same in both (IP6T_INV_* = IPT_INV_*)."""
    layout, unpack = (_ENTRY6, _unpack6) if family == "ipv6" else (_ENTRY, _unpack4)
    entries: list[Entry] = []
    offset = 0
    while offset + layout.size <= len(blob):
        (
            src, dst, smsk, dmsk, iniface, outiface, iniface_mask, outiface_mask,
            proto, invflags, target_offset, next_offset, packets, byte_count, goto,
        ) = unpack(blob, offset)  # fmt: skip
        end = offset + next_offset
        if (
            next_offset < layout.size
            or end > len(blob)
            or not layout.size <= target_offset <= next_offset - _EXTENSION.size
        ):
            raise IptablesError(errno.EBADMSG, f"malformed ip_tables entry at {offset}")
        matches = []
        position = offset + layout.size
        while position < offset + target_offset:
            matches.append(_extension(blob, position, offset + target_offset))
            position += _EXTENSION.size + len(matches[-1].data)
        target = _extension(blob, offset + target_offset, end)
        entries.append(
            Entry(
                offset=offset,
                source=_prefix(src, smsk),
                source_negated=bool(invflags & IPT_INV_SRCIP),
                destination=_prefix(dst, dmsk),
                destination_negated=bool(invflags & IPT_INV_DSTIP),
                in_interface=_interface(iniface, iniface_mask),
                in_negated=bool(invflags & IPT_INV_VIA_IN),
                out_interface=_interface(outiface, outiface_mask),
                out_negated=bool(invflags & IPT_INV_VIA_OUT),
                protocol=proto,
                protocol_negated=bool(invflags & IPT_INV_PROTO),
                matches=tuple(matches),
                target=target,
                packets=packets,
                bytes=byte_count,
                goto=goto,
            )
        )
        offset = end
    return entries


def _extension(blob: bytes, start: int, limit: int) -> Extension:
    if start + _EXTENSION.size > limit:
        raise IptablesError(errno.EBADMSG, f"malformed ip_tables extension at {start}")
    size, name, revision = _EXTENSION.unpack_from(blob, start)
    if size < _EXTENSION.size or start + size > limit:
        raise IptablesError(errno.EBADMSG, f"malformed ip_tables extension at {start}")
    return Extension(_cstring(name), revision, blob[start + _EXTENSION.size : start + size])


def chains(entries: list[Entry], hook_entry: tuple[int, ...], valid_hooks: int) -> list[Chain]:
    """Entries grouped into chains: built-ins start at their hook's offset, user chains at an
    ERROR target naming them; the table ends with an ERROR target named "ERROR"."""
    starts = {
        hook_entry[hook]: name for hook, name in enumerate(HOOKS) if valid_hooks & (1 << hook)
    }
    found: list[Chain] = []
    current: str | None = None
    rules: list[Entry] = []

    def close() -> None:
        if current is not None and rules:
            # Every chain ends with an unconditional standard target that is no rule: a built-in
            # chain's policy, a user chain's RETURN.
            found.append(Chain(current, tuple(rules[:-1]), rules[0].offset, rules[-1]))
        elif current is not None:
            found.append(Chain(current, ()))

    for entry in entries:
        if entry.target.name == "ERROR":
            close()
            label = _cstring(entry.target.data)
            current = None if label == "ERROR" else label
            rules = []
            continue
        if entry.offset in starts:
            close()
            current, rules = starts[entry.offset], []
        rules.append(entry)
    close()
    return found


@functools.cache
def _libc() -> ctypes.CDLL:
    # Once per process: find_library runs `ldconfig -p`, a process and ~1.6 ms, which every
    # table read of every sample paid.
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _getsockopt(
    libc: ctypes.CDLL, fd: int, level: int, option: int, buffer: ctypes.Array[ctypes.c_char]
) -> None:
    size = ctypes.c_uint32(len(buffer))
    if libc.getsockopt(fd, level, option, buffer, ctypes.byref(size)) != 0:
        code = ctypes.get_errno()
        raise IptablesError(code, os.strerror(code))


@dataclass(frozen=True)
class TableBlob:
    """A table as IPT_SO_GET_ENTRIES gives it: its entries' blob, counters and all, and where
    its built-in chains start."""

    family: str
    valid_hooks: int
    hook_entry: tuple[int, ...]
    blob: bytes

    def chains(self) -> list[Chain]:
        return chains(parse_entries(self.blob, self.family), self.hook_entry, self.valid_hooks)

    def rules_key(self) -> bytes:
        """The table without its counters: the same while no rule or chain changed, however
        much traffic the rules count (every entry's pcnt and bcnt zeroed)."""
        layout = _ENTRY6 if self.family == "ipv6" else _ENTRY
        at = layout.size - _COUNTERS.size  # the counters end an entry's fixed part
        next_at = _NEXT_OFFSET_AT[self.family]
        masked = bytearray(self.blob)
        offset = 0
        while offset + layout.size <= len(masked):
            masked[offset + at : offset + layout.size] = _NO_COUNTERS
            step = _NEXT_OFFSET.unpack_from(masked, offset + next_at)[0]
            if step < layout.size:
                break  # malformed: parse_entries says so when it is decoded
            offset += step
        return struct.pack("=I5I", self.valid_hooks, *self.hook_entry) + bytes(masked)

    def counters(self, offset: int) -> tuple[int, int]:
        """(packets, bytes) of the entry at this offset."""
        layout = _ENTRY6 if self.family == "ipv6" else _ENTRY
        found: tuple[int, int] = _COUNTERS.unpack_from(
            self.blob, offset + layout.size - _COUNTERS.size
        )
        return found


# struct xt_counters (pcnt, bcnt) ends ipt_entry and ip6t_entry; next_offset (u16) is at 90
# in ipt_entry (after nfcache and target_offset), at 142 in ip6t_entry.
_COUNTERS = struct.Struct("=QQ")
_NO_COUNTERS = bytes(_COUNTERS.size)
_NEXT_OFFSET = struct.Struct("=H")
_NEXT_OFFSET_AT = {"ipv4": 90, "ipv6": 142}


def read_table_blob(name: str = "nat", family: str = "ipv4") -> TableBlob:
    """The table of ip_tables (family "ipv4") or ip6_tables ("ipv6") as the kernel holds it,
    not yet parsed (TableBlob.chains). Needs CAP_NET_RAW (the socket) and CAP_NET_ADMIN.
    struct ip6t_getinfo and ip6t_get_entries have the same layout as their ipt_ twins."""
    libc = _libc()
    if family == "ipv6":
        domain, level, get_info, get_entries = (
            socket.AF_INET6, SOL_IPV6, IP6T_SO_GET_INFO, IP6T_SO_GET_ENTRIES,
        )  # fmt: skip
    else:
        domain, level, get_info, get_entries = (
            socket.AF_INET, IPPROTO_IP, IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES,
        )  # fmt: skip
    with socket.socket(domain, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        request = _GETINFO.pack(name.encode(), 0, *[0] * 10, 0, 0)
        info = ctypes.create_string_buffer(request, len(request))  # no trailing NUL: exact size
        _getsockopt(libc, sock.fileno(), level, get_info, info)
        fields = _GETINFO.unpack(info.raw)
        valid_hooks, hook_entry, size = fields[1], fields[2:7], fields[13]
        request = struct.pack("=32sI4x", name.encode(), size) + b"\0" * size
        answer = ctypes.create_string_buffer(request, len(request))
        _getsockopt(libc, sock.fileno(), level, get_entries, answer)
    blob = answer.raw[_GET_ENTRIES_HEADER : _GET_ENTRIES_HEADER + size]
    return TableBlob(family, valid_hooks, tuple(hook_entry), blob)


# A standard target's verdict: negative is -NF_xxx - 1 (NF_DROP 0, NF_ACCEPT 1, XT_RETURN
# NF_REPEAT 4), positive the offset of the entry it jumps to.
STANDARD_VERDICTS = {-1: "drop", -2: "accept", -5: "return"}


def standard_verdict(target: Extension) -> tuple[str, int | None]:
    """(verdict, jump offset) of a standard target ("" name); ("other", None) if not one."""
    if target.name != "" or len(target.data) < 4:
        return "other", None
    verdict = struct.unpack_from("=i", target.data, 0)[0]
    if verdict >= 0:
        return "jump", verdict
    return STANDARD_VERDICTS.get(verdict, "other"), None


def destination_port(match: Extension) -> int | None:
    """The first destination port a tcp, udp or sctp match asks for; None for any port."""
    if match.name in ("tcp", "udp") and len(match.data) >= 8:
        low, high = struct.unpack_from("=HH", match.data, 4)  # spts[2], then dpts[2]
    elif match.name == "sctp" and len(match.data) >= 4:
        low, high = struct.unpack_from("=HH", match.data, 0)  # dpts[2] first
    else:
        return None
    return None if (low, high) == (0, 0xFFFF) else low


# ipset's getsockopt (linux/netfilter/ipset/ip_set.h): a set match names its set by index;
# iptables prints the name by asking the kernel, and so does this.
SO_IP_SET = 83
IP_SET_OP_VERSION = 0x100
IP_SET_OP_GET_BYINDEX = 7
IPSET_MAXNAMELEN = 32


def ipset_names(indices: Iterable[int]) -> dict[int, str]:
    """The names of the ipsets with these indices, in the reading process's network namespace
    (a set gone meanwhile, or no ipset support, is left out). Needs CAP_NET_RAW (the socket)
    and CAP_NET_ADMIN."""
    wanted = sorted(set(indices))
    if not wanted:
        return {}
    libc = _libc()
    found: dict[int, str] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        version = ctypes.create_string_buffer(struct.pack("=II", IP_SET_OP_VERSION, 0), 8)
        _getsockopt(libc, sock.fileno(), IPPROTO_IP, SO_IP_SET, version)
        protocol = struct.unpack("=II", version.raw)[1]
        for index in wanted:
            request = struct.pack("=IIH30x", IP_SET_OP_GET_BYINDEX, protocol, index)
            answer = ctypes.create_string_buffer(request, len(request))
            try:
                _getsockopt(libc, sock.fileno(), IPPROTO_IP, SO_IP_SET, answer)
            except IptablesError:
                continue
            name = _cstring(answer.raw[8 : 8 + IPSET_MAXNAMELEN])
            if name:
                found[index] = name
    return found
