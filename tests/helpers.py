"""Running the exporter's pieces for real, and reading what they expose."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import all_collectors
from exporter.sampler import Sampler
from exporter.settings import Settings
from exporter.snapshot import Snapshot


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse(exposition: bytes | str) -> list[Sample]:
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return [
        Sample(s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def select(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def port_verdict(samples: list[Sample], ok: Sample) -> str:
    """One published port's verdict from its docker_host_published_port_ok sample: ok, or
    broken:<hop> / unknown:<hop> from the sample beside it with the same labels."""
    if ok.value == 1:
        return "ok"
    same = dict(ok.labels)
    broken = select(samples, "docker_host_published_port_broken", **same)
    if broken:
        return f"broken:{broken[0].labels['hop']}"
    unknown = select(samples, "docker_host_published_port_unknown", **same)
    return f"unknown:{unknown[0].labels['hop']}" if unknown else "?"


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = select(samples, name, **labels)
    assert len(found) == 1, f"expected one {name}{labels}, found {found}"
    return found[0].value


def sample_once(settings: Settings | None = None) -> tuple[Snapshot, list[Sample]]:
    settings = settings or Settings(collectors=tuple(c.name for c in all_collectors()))
    defs = [c for c in all_collectors() if c.name in settings.collectors]
    sampler = Sampler(((c, c.source(settings)) for c in defs), settings)
    snapshot = sampler.sample_once()
    return snapshot, parse(sampler.store.exposition.text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """handler answering on a free loopback port, from a thread, until the block ends; yields
    its host:port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read()
        return body


def wait_for(predicate: object, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    # Once more past the deadline: on a loaded machine the sleep or a slow check can take the
    # last of the time, and the condition met meanwhile would go unseen.
    if predicate():  # type: ignore[operator]
        return
    raise AssertionError(f"condition not met within {timeout}s")


@contextmanager
def exporter_process(
    *args: str, port: int | None = None, wrapper: Sequence[str] = ()
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The real console entry point in a child process, optionally under a wrapper such as
    setpriv; yields its base URL. Its output is in proc.communicate() after terminate()."""
    port = port or free_port()
    proc = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "exporter",
            f"--web.listen-address=127.0.0.1:{port}",
            *args,
        ],
        cwd=str(Path(__file__).resolve().parents[1]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the exporter exited ({proc.returncode}): {output}")
        return answers(base + "/healthz")

    try:
        # Its imports alone take seconds with both cores busy: an exporter that exits fails
        # at once (with its output), one that starts slowly is given time.
        wait_for(serving, timeout=60, interval=0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            stop(proc, grace=10)


def answers(url: str, containing: bytes = b"", timeout: float = 1.0) -> bool:
    """Whether a GET of url answers now (with a body holding `containing`): for wait_for."""
    try:
        return containing in get(url, timeout=timeout)
    except OSError:
        return False


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = 30) -> None:
    """SIGTERM, then SIGKILL if the process is still there after `grace` seconds."""
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def host_processes() -> Iterator[tuple[int, str, list[str]]]:
    """Every process in the host's /proc: its pid, its name, and the fields of its stat after
    the name (state first: [1] is the parent, [19] the start time)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        yield (
            int(entry.name),
            stat[stat.index("(") + 1 : stat.rindex(")")],
            stat[stat.rindex(")") + 2 :].split(),
        )


def kill_children(pid1: int, comm: str) -> None:
    """Kill PID 1's children of that name, from the host (no exec)."""
    for pid, name, fields in host_processes():
        if int(fields[1]) == pid1 and name == comm:
            os.kill(pid, signal.SIGKILL)
