"""The Engine API reader asks a unix socket without looking for proxy settings: no proxy can
stand between it and a socket file, and looking (the environment's proxy variables, a .netrc)
cost a quarter of each GET's CPU. A daemon over TCP is still reached through the proxy the
environment names, as the docker CLI reaches it. The unix side on the host's real dockerd; the
TCP side on a loopback HTTP server standing in for a daemon, behind a proxy that refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests.sessions

from exporter.readers.docker_api import DockerReader, DockerUnavailable
from tests.helpers import free_port, loopback_http

pytestmark = [pytest.mark.integration]

HOST_DOCKER = "unix:///var/run/docker.sock"


def test_a_unix_socket_is_asked_with_no_look_at_proxy_settings(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def looked(*args: object, **kwargs: object) -> None:
        raise AssertionError("proxy settings looked up for a unix socket")

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", looked)
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", looked)
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{free_port()}")
    reader = DockerReader(HOST_DOCKER, timeout=5.0)
    try:
        reader.ping()
        assert reader.read().api_version  # the version call, the list and the networks
    finally:
        reader.close()


class _Daemon(BaseHTTPRequestHandler):
    """Answers what connecting and a ping ask, as dockerd does."""

    def do_GET(self) -> None:
        body = (
            b"OK" if self.path.endswith("/_ping") else json.dumps({"ApiVersion": "1.41"}).encode()
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tcp_daemon() -> Iterator[str]:
    with loopback_http(_Daemon) as address:
        yield f"tcp://{address}"


def test_a_tcp_daemon_is_still_asked_through_the_proxy_the_environment_names(
    tcp_daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    direct = DockerReader(tcp_daemon, timeout=5.0)
    try:
        direct.ping()  # the stand-in answers
    finally:
        direct.close()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    proxied = DockerReader(tcp_daemon, timeout=5.0)
    try:
        with pytest.raises(DockerUnavailable):
            proxied.ping()  # through the proxy, which refuses
    finally:
        proxied.close()
