"""HTTP: /metrics serves the latest rendered snapshot, /topology its picture, / a landing page,
/healthz liveness.

Nothing here reads the host: the first scrape after a sample renders it (only the series whose
facts changed are written again), and the scrapes after it, until the next sample, serve those
bytes, so extra scrapers cost nothing.
The topology page is rendered by the first request after a snapshot and then served as bytes
the same way (exporter/topology/page.py).
"""

from __future__ import annotations

import base64
import html
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter import __version__
from exporter.metrics import Exposition
from exporter.topology import CONTENT_SECURITY_POLICY
from exporter.webconfig import WebConfig

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The topology page runs only its own inline script and style (by hash), loads nothing else,
# and may not be framed: names from the Engine API are drawn on it.
PAGE_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


def parse_listen_address(address: str) -> tuple[str, int]:
    """Go-style "host:port", ":port" (all interfaces) or "[::1]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def landing_page(
    telemetry_path: str, collectors: list[tuple[str, str]], topology: bool = False
) -> bytes:
    path = html.escape(telemetry_path)
    picture = ' &middot; <a href="/topology">Topology</a>' if topology else ""
    rows = "".join(
        f"<li><code>{html.escape(n)}</code>: {html.escape(d)}</li>" for n, d in collectors
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Docker Host Exporter</title></head>
<body>
<h1>Docker Host Exporter</h1>
<p>Prometheus metrics for this Docker host's plumbing: container PID namespaces and shims,
and more per enabled collector. Values are sampled on an interval; a scrape serves the latest
sample and never touches the host. Version {html.escape(__version__)}.</p>
<p><a href="{path}">Metrics</a>{picture} &middot; <a href="/healthz">Health</a></p>
<h2>Enabled collectors</h2>
<ul>{rows}</ul>
</body></html>
""".encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many scrapers at once must not see connection resets from a short accept queue.
    request_queue_size = 128
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the request's own thread: a slow or hostile
        # client never holds up the accept loop.
        if self.tls is not None:
            request.settimeout(10)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.debug(
                    "tls handshake failed", extra={"peer": client_address, "reason": str(exc)}
                )
                request.close()
                return
        super().finish_request(request, client_address)


class _DualStackServer(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_server(
    listen_address: str,
    telemetry_path: str,
    exposition: Callable[[], Exposition],
    healthy: Callable[[], bool],
    landing: bytes,
    *,
    web_config: WebConfig | None = None,
    topology: Callable[[], Exposition] | None = None,
) -> ThreadingHTTPServer:
    """topology: the /topology page of the latest snapshot (None: the page is off, 404)."""
    auth = web_config.basic_auth if web_config else None
    tls = web_config.tls.context() if web_config and web_config.tls else None

    class Handler(BaseHTTPRequestHandler):
        server_version = f"docker-host-exporter/{__version__}"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY the body waits for the
        # client's delayed ACK, ~40 ms per scrape on a kept-alive connection (Prometheus's).
        disable_nagle_algorithm = True

        def authorized(self) -> bool:
            if auth is None:
                return True
            header = self.headers.get("Authorization", "")
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() == "basic":
                try:
                    user, _, password = base64.b64decode(encoded).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    user = password = ""
                if user and auth.check(user, password):
                    return True
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="docker-host-exporter"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            # /healthz tells nothing about the host: container and kubelet probes may use it
            # without credentials.
            if path != "/healthz" and not self.authorized():
                return
            if path == telemetry_path:
                current = exposition()
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    self._send(200, CONTENT_TYPE, current.gzipped, encoding="gzip")
                else:
                    self._send(200, CONTENT_TYPE, current.text)
            elif path == "/topology" and topology is not None:
                page = topology()
                gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
                self._send(
                    200,
                    "text/html; charset=utf-8",
                    page.gzipped if gzipped else page.text,
                    encoding="gzip" if gzipped else None,
                    headers=PAGE_HEADERS,
                )
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", landing)
            elif path == "/healthz":
                ok = healthy()
                self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"unhealthy\n")
            else:
                self._send(404, "text/plain", b"not found\n")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(
            self,
            status: int,
            ctype: str,
            body: bytes,
            encoding: str | None = None,
            headers: tuple[tuple[str, str], ...] = (),
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if encoding:
                self.send_header("Content-Encoding", encoding)
                self.send_header("Vary", "Accept-Encoding")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http: " + format, *args)

    host, port = parse_listen_address(listen_address)
    server: _Server
    if host in ("", "::"):
        try:
            server = _DualStackServer(("::", port), Handler)
        except OSError:
            if host == "::":
                raise
            # No IPv6 on this host: all IPv4 interfaces then.
            server = _Server(("0.0.0.0", port), Handler)  # noqa: S104
    else:
        server = _Server((host, port), Handler)
    server.tls = tls
    return server


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
