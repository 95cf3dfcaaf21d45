"""A network namespace's listening sockets, from /proc/PID/net/{tcp,tcp6,udp,udp6}, read from
the host without entering the namespace: those files show the namespace of PID. Also
docker-proxy's command line.

A line of /proc/net/tcp is `sl local_address rem_address st ...`; an IPv4 address is the
32-bit word as the kernel holds it (network order) printed with %08X on this CPU, an IPv6
address four such words. TCP LISTEN is state 0A; an unconnected UDP socket (state 07,
TCP_CLOSE) takes datagrams from anyone, a connected one (01) only from its peer.

Cost: the kernel answers a read of tcp or tcp6 by walking the whole established hash after the
listeners, whatever the namespace holds (~1.7 ms for 262144 buckets on this project's VM), so
tcp6 is read only when tcp lacked what was looked for, and only for containers that publish;
and whether listeners found before are still open is told from their inodes among the
/proc/PID/fd links of the container's processes (held_sockets), without reading the file.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass

TCP, UDP = "tcp", "udp"
_LISTEN = "0A"
_UNCONNECTED = "07"
_GONE = (errno.ENOENT, errno.ESRCH)
_REFUSED = (errno.EACCES, errno.EPERM)
# A container's own tables are short; a namespace holding more than this many bytes of sockets
# is read to here (the listeners come first, before any connection).
MAX_BYTES = 1 << 20


class ProcNetError(Exception):
    """A line of /proc/PID/net/* that is not what the kernel writes."""


class ProcNetUnreadable(Exception):
    """The file could not be read: the process is gone (gone=True) or the read was refused."""

    def __init__(self, message: str, gone: bool) -> None:
        super().__init__(message)
        self.gone = gone


@dataclass(frozen=True, order=True)
class BoundSocket:
    """A socket that takes new traffic: a TCP listener, or an unconnected bound UDP socket."""

    protocol: str  # tcp | udp
    address: str  # canonical text; 0.0.0.0 or :: for any
    port: int


def _address(text: str) -> str:
    if len(text) == 8:
        return str(ipaddress.IPv4Address(int(text, 16).to_bytes(4, sys.byteorder)))
    if len(text) == 32:
        packed = b"".join(
            int(text[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, 32, 8)
        )
        return str(ipaddress.IPv6Address(packed))
    raise ProcNetError(f"address of {len(text)} hex digits")


def parse_bound_sockets(text: str, protocol: str) -> tuple[BoundSocket, ...]:
    """The sockets of one /proc/PID/net/{tcp,tcp6,udp,udp6} text that take new traffic:
    state 0A for tcp, 07 for udp. Raises ProcNetError on a line the kernel would not write."""
    return tuple(s for s, _ in parse_bound_socket_inodes(text, protocol))


def parse_bound_socket_inodes(text: str, protocol: str) -> tuple[tuple[BoundSocket, int], ...]:
    """parse_bound_sockets, each socket with its inode (the `socket:[inode]` its holders'
    /proc/PID/fd links name)."""
    wanted = _LISTEN if protocol == TCP else _UNCONNECTED
    found = []
    lines = text.splitlines()
    if not lines or not lines[0].lstrip().startswith("sl"):
        raise ProcNetError("no header line")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 10 or not fields[0].endswith(":"):
            raise ProcNetError(f"line of {len(fields)} fields: {line[:80]!r}")
        local, state = fields[1], fields[3]
        address, colon, port = local.partition(":")
        if not colon or len(port) != 4 or len(state) != 2:
            raise ProcNetError(f"malformed socket: {line[:80]!r}")
        try:
            port_number = int(port, 16)
            int(state, 16)
            if state.upper() != wanted:
                continue
            inode = int(fields[9])
            found.append((BoundSocket(protocol, _address(address), port_number), inode))
        except ValueError as exc:
            raise ProcNetError(f"malformed socket: {line[:80]!r}") from exc
    return tuple(found)


# A read of a seq_file returns less than asked for only at its end, or when the kernel's own
# buffer (a page at least, and never less than a record) is full: a chunk shorter than this is
# its end. Reading on to the empty read would cost a second walk of the TCP hash.
_SHORT_CHUNK = 2048


def read_file(path: str) -> str:
    """One /proc/PID/net file, whole (to MAX_BYTES), in as few reads as the kernel allows."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ProcNetUnreadable(f"{path}: {exc.strerror}", exc.errno in _GONE) from exc
    try:
        chunks = []
        size = 0
        while size < MAX_BYTES and (chunk := os.read(fd, 65536)):
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < _SHORT_CHUNK:
                break
    except OSError as exc:
        raise ProcNetUnreadable(f"{path}: {exc.strerror}", exc.errno in _GONE) from exc
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", errors="replace")


def bound_sockets(
    procfs: str, pid: int, protocol: str, wanted_ports: Iterable[int], ipv6_first: bool = False
) -> tuple[BoundSocket, ...]:
    """The sockets of `protocol` in PID's network namespace: one family's file, then the other's
    only if some wanted port had no socket in the first (a listener on :: takes IPv4 too,
    unless it is IPV6_V6ONLY, which /proc does not show). IPv4 first, unless ipv6_first (where
    the listener was found last time)."""
    return tuple(s for s, _ in bound_socket_inodes(procfs, pid, protocol, wanted_ports, ipv6_first))


def bound_socket_inodes(
    procfs: str, pid: int, protocol: str, wanted_ports: Iterable[int], ipv6_first: bool = False
) -> tuple[tuple[BoundSocket, int], ...]:
    """bound_sockets, each socket with its inode."""
    wanted = set(wanted_ports)
    prefix = f"{procfs.rstrip('/')}/{pid}/net/{protocol}"
    files = (prefix + "6", prefix) if ipv6_first else (prefix, prefix + "6")
    found = parse_bound_socket_inodes(read_file(files[0]), protocol)
    if wanted - {s.port for s, _ in found}:
        found += parse_bound_socket_inodes(read_file(files[1]), protocol)
    return found


# A process holding more descriptors than this is not searched for sockets: a full reading of
# /proc/PID/net costs less than some 500 readlinks.
MAX_FDS = 256


def held_sockets(procfs: str, pids: Iterable[int], inodes: Iterable[int]) -> frozenset[int]:
    """Which of the socket inodes the processes hold open, from their /proc/PID/fd links (a
    few microseconds a descriptor, against a walk of the whole TCP hash for /proc/PID/net);
    the processes are searched in turn until all are found. An open socket keeps its binding:
    a listener still held is still bound to its address and port (it stops listening only by
    being closed, or by a shutdown() no server calls on it). A process gone, refused or with
    more than MAX_FDS descriptors shows nothing."""
    wanted = set(inodes)
    found: set[int] = set()
    for pid in pids:
        if found >= wanted:
            break
        base = f"{procfs.rstrip('/')}/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError:
            continue
        if len(names) > MAX_FDS:
            continue
        for name in names:
            try:
                target = os.readlink(f"{base}/{name}")
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:[") and target.endswith("]"):
                try:
                    inode = int(target[8:-1])
                except ValueError:
                    continue
                if inode in wanted:
                    found.add(inode)
    return frozenset(found)


@dataclass(frozen=True, order=True)
class ProxyProcess:
    """A docker-proxy process: dockerd's userland proxy for one published port."""

    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


def parse_proxy_argv(argv: tuple[str, ...]) -> ProxyProcess | None:
    """`docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2
    -container-port 80` (Go's flag package: one or two dashes, `-flag value` or
    `-flag=value`); None for anything else."""
    if not argv or not argv[0].rstrip("/").rpartition("/")[2].startswith("docker-proxy"):
        return None
    options: dict[str, str] = {}
    args = list(argv[1:])
    i = 0
    while i < len(args):
        name, has_value, value = args[i].lstrip("-").partition("=")
        i += 1
        if not has_value and i < len(args) and not args[i].startswith("-"):
            value = args[i]
            i += 1
        options[name] = value
    try:
        return ProxyProcess(
            protocol=options.get("proto", TCP),
            host_ip=str(ipaddress.ip_address(options["host-ip"])),
            host_port=int(options["host-port"]),
            container_ip=str(ipaddress.ip_address(options["container-ip"])),
            container_port=int(options["container-port"]),
        )
    except (KeyError, ValueError):
        return None
