"""The kernel's process events: the proc connector (NETLINK_CONNECTOR, CN_IDX_PROC).

The kernel multicasts a message for every fork, exec, comm change and exit on the host, with pids
of the initial PID namespace. Reading them says which processes changed since the last sample, so
the /proc scan re-reads only those instead of every /proc/PID/stat.

Subscribing needs CAP_NET_ADMIN in the initial user namespace, and the exporter living in the
initial PID namespace: elsewhere the kernel answers EPERM or ignores the request, and the caller
falls back to full scans. Messages are read only when a sample asks (no thread): the socket's
buffer holds what happened in between, and when it overflows the kernel says so (ENOBUFS), which
means events were lost and everything must be read again.

The structures are linux/connector.h's and linux/cn_proc.h's, parsed with struct.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
SO_RCVBUFFORCE = 33  # asm-generic/socket.h; Python's socket module lacks it

# enum proc_event's `what`
PROC_EVENT_NONE = 0x0  # the answer to a listen request: event_data is {err}
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_COMM = 0x200
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_PROC_EVENT = struct.Struct("=IIQ")  # what, cpu, timestamp_ns; event_data follows at 16
_PIDS = struct.Struct("=iiii")  # the first four pids of fork/exit's event_data
_HEADER = _NLMSGHDR.size + _CN_MSG.size
# The one message a datagram holds, read at once up to the event's first four pids: the kernel
# sends each event alone, and a busy host sends hundreds a second.
_MESSAGE = struct.Struct("=IHHII" + "IIIIHH" + "IIQ" + "iiii")

# Room for the events between two samples: each message takes ~830 bytes of buffer (the skb's
# own size counts; 630 fitted in 256 KiB asked, which the kernel doubles), so the default
# ~208 KiB holds ~250 events, and this (4 MiB once doubled) ~5000: 330 a second at the default
# 15 s interval. Asked with SO_RCVBUFFORCE (CAP_NET_ADMIN, which subscribing needs anyway);
# memory is used only by what waits in it, drained at every scan.
RECEIVE_BUFFER = 2 << 20
_ACK_WAIT = 1.0  # seconds for the kernel's answer to the listen request


class ProcEventsUnavailable(Exception):
    """The proc connector cannot be used here; the reason is the message."""


@dataclass
class Changes:
    """What one drain of the socket says changed, by process (thread-group) id."""

    touched: set[int] = field(default_factory=set)  # forked, exec'd or renamed: read its stat
    exited: set[int] = field(default_factory=set)  # a thread of it exited: it or its children
    execed: set[int] = field(default_factory=set)  # its argv and namespaces are new
    lost: bool = False  # the socket overflowed: events are missing
    events: int = 0


def listen_request(ack: int, op: int = PROC_CN_MCAST_LISTEN) -> bytes:
    """A request the kernel answers with a PROC_EVENT_NONE whose ack is this one's plus one."""
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, ack, len(payload), 0)
    length = _NLMSGHDR.size + len(cn) + len(payload)
    return _NLMSGHDR.pack(length, NLMSG_DONE, 0, 0, os.getpid()) + cn + payload


@dataclass(frozen=True)
class ProcEvent:
    what: int
    seq: int  # the connector's sequence number (per CPU)
    ack: int
    pid: int  # fork: the child; exec, comm, exit: the thread
    tgid: int  # its process
    parent_tgid: int = 0  # fork only
    err: int = 0  # PROC_EVENT_NONE only


def parse_events(data: bytes) -> Iterator[ProcEvent]:
    """The proc events in one datagram (normally one netlink message)."""
    offset = 0
    while offset + _HEADER <= len(data):
        length, kind, _flags, _seq, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return  # truncated or garbled: nothing more to trust in this datagram
        if kind in (NLMSG_DONE, NLMSG_NOOP) or kind > NLMSG_ERROR:
            yield from _parse_cn(data, offset + _NLMSGHDR.size, offset + length)
        offset += (length + 3) & ~3


def _parse_cn(data: bytes, start: int, end: int) -> Iterator[ProcEvent]:
    if start + _CN_MSG.size > end:
        return
    idx, val, seq, ack, size, _flags = _CN_MSG.unpack_from(data, start)
    body = start + _CN_MSG.size
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC) or size < 24 or body + 24 > end:
        return
    what, _cpu, _ts = _PROC_EVENT.unpack_from(data, body)
    a, b, c, d = _PIDS.unpack_from(data, body + 16) if size >= 32 and body + 32 <= end else (0,) * 4
    if what == PROC_EVENT_NONE:
        yield ProcEvent(what, seq, ack, 0, 0, err=struct.unpack_from("=I", data, body + 16)[0])
    elif what == PROC_EVENT_FORK:  # parent_pid, parent_tgid, child_pid, child_tgid
        yield ProcEvent(what, seq, ack, c, d, parent_tgid=b)
    else:  # exec, comm, exit and the rest start with process_pid, process_tgid
        yield ProcEvent(what, seq, ack, a, b)


def apply(changes: Changes, event: ProcEvent) -> None:
    """Folds one event into what changed. Threads matter only through their process: a new
    thread changes nothing /proc/PID/stat shows, but any exit can end the thread group (the last
    thread's exit is the group's death, and reparents the group's children)."""
    _fold(changes, event.what, event.pid, event.tgid)


def _fold(changes: Changes, what: int, pid: int, tgid: int) -> None:
    """apply() on the fields alone (pid: fork's child, else the thread)."""
    changes.events += 1
    if what == PROC_EVENT_FORK:
        if pid == tgid:
            changes.touched.add(tgid)
    elif what == PROC_EVENT_EXEC:
        changes.touched.add(tgid)
        changes.execed.add(tgid)
    elif what == PROC_EVENT_COMM:
        if pid == tgid:  # a thread's own name is not the process's comm
            changes.touched.add(tgid)
    elif what == PROC_EVENT_EXIT:
        changes.exited.add(tgid)


class ProcEvents:
    """One subscription to the proc connector, read without blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def open(cls, receive_buffer: int = RECEIVE_BUFFER, force: bool = True) -> ProcEvents:
        """Subscribes; raises ProcEventsUnavailable when the kernel refuses or never answers."""
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:  # EPROTONOSUPPORT: a kernel without CONFIG_CONNECTOR
            raise ProcEventsUnavailable(f"no proc connector: {exc.strerror}") from exc
        try:
            _buffer(sock, receive_buffer, force)
            sock.bind((0, CN_IDX_PROC))
            # Other listeners' answers come to the group too: ours carries our ack plus one.
            ack = int.from_bytes(os.urandom(3), "little")
            sock.send(listen_request(ack))
            _await_ack(sock, ack)
            sock.setblocking(False)
        except ProcEventsUnavailable:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise ProcEventsUnavailable(
                f"proc connector refused: {exc.strerror} (needs CAP_NET_ADMIN in the initial "
                "user namespace)"
            ) from exc
        return cls(sock)

    def fileno(self) -> int:
        return self._sock.fileno()

    def datagrams(self) -> Iterator[bytes | None]:
        """The datagrams waiting, as received; None where the socket overflowed (ENOBUFS)."""
        while True:
            try:
                yield self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                yield None  # reported once; what is queued after it is read on

    def drain(self) -> Changes:
        """Every event waiting, folded; lost is set when the socket overflowed since last time."""
        changes = Changes()
        for data in self.datagrams():
            if data is None:
                changes.lost = True
            elif len(data) == _MESSAGE.size + 8:  # one message: apply() inlined, unpacked once
                fields = _MESSAGE.unpack_from(data)
                if fields[5] != CN_IDX_PROC or fields[6] != CN_VAL_PROC:
                    continue
                if fields[11] == PROC_EVENT_FORK:  # parent pid and tgid, child pid and tgid
                    _fold(changes, PROC_EVENT_FORK, fields[16], fields[17])
                else:  # pid and tgid first
                    _fold(changes, fields[11], fields[14], fields[15])
            else:
                for event in parse_events(data):
                    if event.what != PROC_EVENT_NONE:
                        apply(changes, event)
        return changes

    def close(self) -> None:
        # The kernel also forgets a closed socket's subscription (Linux >= 6.6): best effort.
        with contextlib.suppress(OSError):
            self._sock.send(listen_request(0, PROC_CN_MCAST_IGNORE))
        self._sock.close()


def _buffer(sock: socket.socket, size: int, force: bool) -> None:
    if force:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            return
        except PermissionError:
            pass
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at rmem_max


def _await_ack(sock: socket.socket, ack: int) -> None:
    """The kernel answers a listen request with a PROC_EVENT_NONE on the group itself (other
    listeners' answers and events may come first); from outside the initial PID or user
    namespace it does not answer at all."""
    deadline = time.monotonic() + _ACK_WAIT
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        for event in parse_events(sock.recv(65536)):
            if event.what == PROC_EVENT_NONE and event.ack == ack + 1:
                if event.err:
                    raise ProcEventsUnavailable(
                        f"proc connector refused: {os.strerror(event.err)} "
                        "(needs CAP_NET_ADMIN in the initial user namespace)"
                    )
                return
    raise ProcEventsUnavailable(
        "the proc connector did not answer: the exporter is not in the initial PID and user "
        "namespaces"
    )
