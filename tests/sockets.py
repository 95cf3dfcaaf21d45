"""Unix-socket stand-ins for the Docker socket: a recording proxy to the real dockerd (the
daemon appearing, and which HTTP methods the exporter used), and a server that never answers."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

REAL_DOCKER_SOCKET = "/var/run/docker.sock"


class _Listener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(64)
        self.closed = threading.Event()
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closed.set()
        self.sock.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()
        self.path.unlink(missing_ok=True)


class HangingDocker(_Listener):
    """Accepts connections and reads requests, but never answers."""

    def handle(self, conn: socket.socket) -> None:
        pass


class RecordingProxy(_Listener):
    """Forwards to the real Docker socket, recording each request line it sees."""

    def __init__(self, path: Path, upstream: str = REAL_DOCKER_SOCKET) -> None:
        self.upstream = upstream
        self.request_lines: list[str] = []
        super().__init__(path)

    def handle(self, conn: socket.socket) -> None:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.upstream)
        self.connections.append(up)
        threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if requests:
                    # Requests from the exporter are small GETs: each starts a segment.
                    for line in data.split(b"\r\n"):
                        if line.split(b" ")[-1:] in ([b"HTTP/1.1"], [b"HTTP/1.0"]):
                            self.request_lines.append(line.decode(errors="replace"))
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    @property
    def methods(self) -> set[str]:
        return {line.split(" ", 1)[0] for line in self.request_lines}


class FaultyDocker(_Listener):
    """A proxy to the real Docker socket whose fault can be switched while it runs.

    Each request is held `delay` seconds before it is forwarded, so every answer comes that much
    later (a slow daemon); or, while hanging, held until forwarding resumes (a daemon that accepts
    and reads but never answers). Requests already held when forwarding resumes go on to dockerd,
    and their answers to whoever still listens.
    """

    def __init__(
        self, path: Path, upstream: str = REAL_DOCKER_SOCKET, delay: float = 0.0, hang: bool = False
    ) -> None:
        self.upstream = upstream
        self.delay = delay
        self.requests = 0
        self._flowing = threading.Event()
        if not hang:
            self._flowing.set()
        self._held: set[socket.socket] = set()  # connections whose request is held now
        self._held_lock = threading.Lock()
        super().__init__(path)

    def waiting(self) -> frozenset[int]:
        """The held requests whose client still waits for an answer (it has not closed its
        end), by connection: a call of the exporter's that is still in progress."""
        with self._held_lock:
            held = list(self._held)
        waiting = set()
        for conn in held:
            try:
                if conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                    continue  # closed by the client: it gave up
            except BlockingIOError:
                pass  # nothing to read, still open
            except OSError:
                continue
            waiting.add(id(conn))
        return frozenset(waiting)

    def hang(self) -> None:
        self._flowing.clear()

    def forward(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._flowing.set()

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        up: socket.socket | None = None
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                with self._held_lock:
                    self._held.add(conn)
                try:
                    while not self._flowing.wait(0.05):
                        if self.closed.is_set():
                            return
                finally:
                    with self._held_lock:
                        self._held.discard(conn)
                if self.delay and self.closed.wait(self.delay):
                    return
                if up is None:
                    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self.connections.append(up)
                    up.connect(self.upstream)
                    threading.Thread(target=self._answers, args=(up, conn), daemon=True).start()
                self.requests += 1
                up.sendall(data)
        # The client closed its end (or the proxy is closing): so does the proxy, both ways.
        for end in (conn, up):
            if end is not None:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    @staticmethod
    def _answers(up: socket.socket, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := up.recv(65536):
                conn.sendall(data)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
