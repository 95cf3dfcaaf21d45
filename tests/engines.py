"""Recorded engines: what a real dockerd of a given version made (its rule sets, its Engine
API answers, its command line and daemon.json, the exporter's verdicts on it), kept under
tests/fixtures/engines/<version>-<backend>/ by scripts/record-engine.sh, and replayed here:
the rule sets loaded into a network namespace of the test's own, the answers served on a unix
socket by a GET-only server of our own, the real exporter run in that namespace against it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import Sample, parse, stop, wait_for

FIXTURES = Path(__file__).parent / "fixtures" / "engines"
# Query parameters that name a moment, not an answer: /events is filtered by them on replay.
_TIME_PARAMS = ("since", "until")


def recorded_engines() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if (p / "engine.json").exists())


@dataclass(frozen=True)
class Recording:
    directory: Path

    @property
    def engine(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.directory / "engine.json").read_text())
        return loaded

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def backend(self) -> str:
        return str(self.engine["backend"])

    @property
    def version(self) -> str:
        return str(self.engine["version"])

    def api(self) -> list[dict[str, Any]]:
        loaded: list[dict[str, Any]] = json.loads((self.directory / "api.json").read_text())
        return loaded

    def text(self, name: str) -> str:
        return (self.directory / name).read_text()

    def verdicts(self) -> list[Sample]:
        """The exporter's exposition on the live engine, as recorded."""
        return parse((self.directory / "metrics.prom").read_bytes())


def api_key(path: str) -> str:
    """An answer's key: the path without the API version prefix, with its query sorted and
    without the moment parameters."""
    parsed = urllib.parse.urlsplit(path)
    parts = parsed.path.split("/")
    if len(parts) > 1 and parts[1].startswith("v") and parts[1][1:2].isdigit():
        parts = ["", *parts[2:]]
    query = sorted((k, v) for k, v in urllib.parse.parse_qsl(parsed.query) if k not in _TIME_PARAMS)
    return "/".join(parts) + ("?" + urllib.parse.urlencode(query) if query else "")


def _moments(path: str) -> tuple[float, float]:
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
    return float(query.get("since") or 0), float(query.get("until") or time.time())


def _event_time(event: dict[str, Any]) -> float:
    nanos = event.get("timeNano")
    return int(nanos) / 1e9 if nanos else float(event.get("time") or 0)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


class _UnixHTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def __init__(self, path: str, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(path, handler)  # type: ignore[arg-type]  # an AF_UNIX address

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self) -> tuple[Any, Any]:
        conn, _ = self.socket.accept()
        return conn, ("local", 0)


class ReplayedEngine:
    """A GET-only Engine API of recorded answers on a unix socket. A request never recorded
    gets a 404 (and is listed in `unanswered`), any other method a 405: what the exporter asks
    is exactly what it asked the live engine, so a miss is a change worth seeing. /events
    answers the recorded events inside the request's since/until."""

    def __init__(self, path: Path, answers: list[dict[str, Any]]) -> None:
        self.path = path
        self.answers: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        for answer in answers:
            key = api_key(answer["path"])
            if key.split("?")[0] == "/events":
                self.events += [json.loads(line) for line in answer["body"].splitlines() if line]
            else:
                self.answers[key] = answer
        self.unanswered: list[str] = []
        self.methods: set[str] = set()
        self.closing = threading.Event()
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Api-Version", str(replay.api_version))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                replay.methods.add("GET")
                key = api_key(self.path)
                if key == "/_ping":  # dockerd's liveness answer: always the same, not recorded
                    self._send(200, b"OK", "text/plain; charset=utf-8")
                    return
                if key.split("?")[0] == "/events" and "until=" not in self.path:
                    self._follow()
                    return
                if key.split("?")[0] == "/events":
                    since, until = _moments(self.path)
                    body = "".join(
                        json.dumps(e) + "\n"
                        for e in replay.events
                        if since <= _event_time(e) <= until
                    )
                    self._send(200, body.encode(), "application/json")
                    return
                answer = replay.answers.get(key)
                if answer is None:
                    replay.unanswered.append(key)
                    self._send(404, b'{"message":"not recorded"}', "application/json")
                    return
                self._send(
                    int(answer["status"]),
                    answer["body"].encode(),
                    answer.get("content_type") or "application/json",
                )

            def _follow(self) -> None:
                """A followed event stream, as dockerd holds it open: the recorded events are
                all in the past, so none comes; it ends when the replay does."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Api-Version", str(replay.api_version))
                self.end_headers()
                self.wfile.flush()
                replay.closing.wait()
                with contextlib.suppress(OSError):
                    self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True

            def do_HEAD(self) -> None:
                self.do_GET()

            def _refuse(self) -> None:
                replay.methods.add(self.command)
                self._send(405, b'{"message":"read-only replay"}', "application/json")

            do_POST = do_PUT = do_DELETE = _refuse

        self.server = _UnixHTTPServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_version(self) -> str:
        version = self.answers.get("/version")
        return str(json.loads(version["body"]).get("ApiVersion", "")) if version else ""

    def __enter__(self) -> ReplayedEngine:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


_NFT_ORDER = {"table": 0, "chain": 1, "set": 2, "map": 2, "flowtable": 2, "element": 3, "rule": 4}


def nft_loadable(ruleset: dict[str, Any]) -> dict[str, Any]:
    """`nft -j list ruleset` made loadable by `nft -j -f`: without metainfo and handles (a
    handle on input is a position), chains before the maps whose verdicts jump to them, rules
    last (each chain's in their listed order)."""
    objects = []
    for entry in ruleset["nftables"]:
        kind, body = next(iter(entry.items()))
        if kind == "metainfo":
            continue
        objects.append({kind: {k: v for k, v in body.items() if k != "handle"}})
    objects.sort(key=lambda o: _NFT_ORDER[next(iter(o))])
    return {"nftables": objects}


# -- a network namespace of the test's own ------------------------------------------------------


def run(*command: str, stdin: str | None = None) -> str:
    return subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=120, input=stdin
    ).stdout


@contextlib.contextmanager
def netns(prefix: str = "dhx") -> Iterator[str]:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def in_netns(name: str, *command: str, stdin: str | None = None) -> str:
    # nsenter, not `ip netns exec`: that one remounts /sys.
    return run("nsenter", f"--net=/run/netns/{name}", *command, stdin=stdin)


def free_port(name: str) -> int:
    """A TCP port free on the namespace's loopback: the engine's namespace binds only the
    published ports (18xxx), so 19747 is free there."""
    del name
    return 19747


_GET = (
    "import sys, urllib.request\n"
    "try:\n"
    "    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())\n"
    "except OSError as e:\n"
    "    sys.exit(f'unreachable: {e}')\n"
)


def get_in_netns(name: str, url: str) -> str | None:
    found = subprocess.run(
        ["nsenter", f"--net=/run/netns/{name}", sys.executable, "-c", _GET, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return found.stdout if found.returncode == 0 else None


@contextlib.contextmanager
def exporter_in_netns(name: str, docker_host: str, *flags: str) -> Iterator[Exporter]:
    """The real program, `docker-host-exporter`, serving in the namespace."""
    port = free_port(name)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{name}",
                sys.executable,
                "-m",
                "exporter",  # the docker-host-exporter program
                f"--docker.host={docker_host}",
                f"--web.listen-address=127.0.0.1:{port}",
                *flags,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            yield Exporter(name, f"http://127.0.0.1:{port}/metrics", process, log)
        finally:
            stop(process)


@dataclass
class Exporter:
    netns: str
    url: str
    process: subprocess.Popen[bytes]
    log: Any

    def output(self) -> str:
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace"))

    def scrape(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(f"the exporter ended:\n{self.output()[-3000:]}")
        return get_in_netns(self.netns, self.url)

    def sampled(self, collectors: tuple[str, ...], timeout: float = 120) -> list[Sample]:
        """The first exposition in which every named collector has run."""
        found: list[list[Sample]] = []

        def ready() -> bool:
            text = self.scrape()
            if not text:
                return False
            samples = parse(text)
            done = {
                s.labels["collector"]
                for s in samples
                if s.name
                in {
                    "docker_host_collector_last_success_timestamp_seconds",
                    "docker_host_collector_success",
                }
            }
            if set(collectors) <= done:
                found.append(samples)
                return True
            return False

        wait_for(ready, timeout=timeout, interval=0.5)
        return found[-1]
