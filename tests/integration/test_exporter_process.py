"""The exporter as users run it: the console entry point in its own process, scraped over HTTP."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors import all_collectors
from exporter.sampler import Sampler
from exporter.settings import Settings
from exporter.tick import Tick
from exporter.web import make_server, serve_in_background
from tests.conftest import Containers
from tests.helpers import exporter_process, free_port, get, parse, select, value, wait_for
from tests.sockets import HangingDocker, RecordingProxy

pytestmark = pytest.mark.integration


def success(base: str, collector: str) -> float | None:
    found = select(
        parse(get(base + "/metrics")), "docker_host_collector_success", collector=collector
    )
    return found[0].value if found else None


def test_real_metrics_pass_promtool(containers: Containers, promtool: str) -> None:
    containers.run("lint", labels={"com.example.quote": 'a "quoted"\nvalue'})
    with exporter_process("--sample.interval=1s") as (base, _):
        wait_for(lambda: success(base, "containers") == 1 and success(base, "processes") == 1)
        body = get(base + "/metrics")
    lint = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=body, capture_output=True, timeout=60
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout + lint.stderr == b""
    assert b"# HELP docker_host_container_pid1_info" in body
    assert b"Sampled on the collector's interval" in body


def blocked_signals(pid: int) -> dict[str, set[int]]:
    """Each thread's blocked signals (SigBlk in its status), by thread id and name."""
    masks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a request's thread, gone since the listing
        status = dict(line.split(":\t", 1) for line in text.splitlines())
        mask = int(status["SigBlk"], 16)
        masks[f"{task.name} {status['Name']}"] = {n for n in range(1, 65) if mask >> (n - 1) & 1}
    return masks


def test_landing_page_health_gzip_and_sigterm(root: None) -> None:
    with exporter_process("--sample.interval=1s", "--web.telemetry-path=/probe") as (base, proc):
        wait_for(lambda: b"docker_host_collector_success" in get(base + "/probe"))
        landing = get(base + "/")
        assert b'href="/probe"' in landing
        assert get(base + "/healthz") == b"ok\n"
        zipped = get(base + "/probe", headers={"Accept-Encoding": "gzip"})
        assert b"docker_host_collector_success" in gzip.decompress(zipped)
        # A handler-driven shutdown once missed a SIGTERM for 15 s: the main thread now takes
        # it with sigwait, which works only if no other thread can take it first. (Inside
        # sigwait the kernel unblocks the awaited signals for the main thread itself.)
        others = {
            t: m for t, m in blocked_signals(proc.pid).items() if int(t.split()[0]) != proc.pid
        }
        assert len(others) >= 3, others  # scheduler, collectors, http
        for thread, blocked in others.items():
            assert {signal.SIGTERM, signal.SIGINT} <= blocked, thread
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "shutting down" in out
    assert "signal=SIGTERM" in out


def test_exporter_started_before_dockerd_recovers_by_itself(root: None, engine: Any) -> None:
    # The exporter's docker socket first does not exist (dockerd down), then appears and is
    # served by the real dockerd (through a proxy that also records which methods were used).
    workdir = Path(tempfile.mkdtemp(prefix="dhe-"))
    sock = workdir / "docker.sock"
    proxy = None
    try:
        with exporter_process("--sample.interval=1s", f"--docker.host=unix://{sock}") as (
            base,
            proc,
        ):
            wait_for(lambda: success(base, "containers") == 0 and success(base, "processes") == 1)
            # Several failed intervals pass: the log must still say it once.
            threading.Event().wait(3.5)
            proxy = RecordingProxy(sock)
            wait_for(lambda: success(base, "containers") == 1)
            samples = parse(get(base + "/metrics"))
            assert select(samples, "docker_host_engine_component_info", component="Engine")
            proc.terminate()
            out, _ = proc.communicate(timeout=15)
        failures = [line for line in out.splitlines() if 'msg="collector failed"' in line]
        failed = [line.split("collector=")[1].split()[0] for line in failures]
        # Once per collector and reason, however many intervals it stayed down. A new reason
        # is a new line: on a loaded machine the first runs through the proxy may time out
        # (the 0.8 s run timeout) before one succeeds.
        reasons = [line.split(" reason=")[1] for line in failures]  # the reason, the collector
        assert len(reasons) == len(set(reasons)), out
        assert "containers" in failed
        containers_line = next(line for line in failures if "collector=containers" in line)
        assert "socket does not exist" in containers_line
        assert 'msg="collector recovered" collector=containers' in out
        assert proxy.request_lines, "the exporter never reached dockerd through the proxy"
        assert proxy.methods == {"GET"}, proxy.request_lines
    finally:
        if proxy is not None:
            proxy.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_hanging_docker_socket_times_out_without_piling_up_threads(root: None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dhe-"))
    hanging = HangingDocker(workdir / "docker.sock")
    try:
        with exporter_process(
            "--sample.interval=1s",
            "--sample.timeout=500ms",
            f"--docker.host=unix://{workdir / 'docker.sock'}",
        ) as (base, proc):
            wait_for(lambda: success(base, "containers") == 0)
            assert success(base, "processes") == 1
            threads = len(os.listdir(f"/proc/{proc.pid}/task"))
            # Several intervals later a scrape still answers at once and no thread piled up.
            threading.Event().wait(4)
            samples = parse(get(base + "/metrics", timeout=2))
            assert value(samples, "docker_host_collector_success", collector="processes") == 1
            assert value(samples, "docker_host_collector_success", collector="containers") == 0
            assert len(os.listdir(f"/proc/{proc.pid}/task")) <= threads
            proc.terminate()
            out, _ = proc.communicate(timeout=15)
        assert "timed out" in out
        assert proc.returncode == 0
    finally:
        hanging.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_without_privileges_it_degrades_and_says_why(containers: Containers) -> None:
    c = containers.run("unprivileged")
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is part of the test bed"
    # nobody, no capabilities: /proc/PID/ns of root's processes and the Docker socket refuse.
    nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")
    with exporter_process("--sample.interval=1s", wrapper=nobody) as (base, proc):
        wait_for(lambda: success(base, "processes") == 1 and success(base, "containers") == 0)
        samples = parse(get(base + "/metrics"))
        # Without a container list the name is the short id; the namespaces are refused.
        assert (
            value(samples, "docker_host_container_namespaces_unreadable", container=c.id[:12]) == 7
        )
        assert value(samples, "docker_host_container_processes", container=c.id[:12]) == 1
        # The link dump needs no privilege; judging a veth does: none is called orphaned.
        assert value(samples, "docker_host_collector_success", collector="network") == 1
        assert value(samples, "docker_host_network_namespaces_unreadable") >= 1
        assert not select(samples, "docker_host_veth_orphaned")
        assert select(samples, "docker_host_bridge_info", bridge="docker0")
        for collector in ("processes", "network"):
            assert (
                value(
                    samples,
                    "docker_host_privilege_missing",
                    collector=collector,
                    capability="CAP_SYS_PTRACE",
                )
                == 1
            )
        # Neither firewall backend can be read: the nat collector says so, and which privilege.
        assert value(samples, "docker_host_collector_success", collector="nat") == 1
        assert value(samples, "docker_host_nat_backend_readable", backend="nftables") == 0
        assert (
            value(
                samples,
                "docker_host_privilege_missing",
                collector="nat",
                capability="CAP_NET_ADMIN",
            )
            == 1
        )
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert "needs CAP_SYS_PTRACE" in out
    assert "cannot open containers' /proc/PID/ns/net" in out
    assert "firewall backend unreadable: needs CAP_NET_ADMIN" in out
    assert "permission denied on the socket" in out


def test_scrapes_never_touch_the_host(root: None, engine: Any) -> None:
    settings = Settings(collectors=("containers", "processes"), sample_interval=3600)
    reads = {"containers": 0, "processes": 0}

    class Counting:
        def __init__(self, name: str, inner: Any) -> None:
            self.name, self.inner = name, inner

        def read(self, tick: Tick) -> object:
            reads[self.name] += 1
            return self.inner.read(tick)

        def close(self) -> None:
            self.inner.close()

    defs = [c for c in all_collectors() if c.name in settings.collectors]
    sampler = Sampler(((c, Counting(c.name, c.source(settings))) for c in defs), settings)
    sampler.start()
    port = free_port()
    server = make_server(
        f"127.0.0.1:{port}", "/metrics", lambda: sampler.store.exposition, sampler.healthy, b""
    )
    serve_in_background(server)
    try:
        sampler.store.wait(lambda s: len(s.collectors) == 2, timeout=20)
        assert reads == {"containers": 1, "processes": 1}
        bodies: list[bytes] = []

        def scrape() -> None:
            for _ in range(30):
                bodies.append(get(f"http://127.0.0.1:{port}/metrics"))

        scrapers = [threading.Thread(target=scrape) for _ in range(10)]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join(60)
        assert len(bodies) == 300
        assert len(set(bodies)) == 1
        assert reads == {"containers": 1, "processes": 1}
    finally:
        server.shutdown()
        server.server_close()
        sampler.stop()


def test_inspect_prints_tables_and_fails_only_when_nothing_is_readable(
    containers: Containers, tmp_path: Path
) -> None:
    c = containers.run("inspected")
    ok = subprocess.run(
        [sys.executable, "-m", "exporter", "inspect"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "CONTAINER PROCESSES" in ok.stdout and c.name in ok.stdout
    partial = subprocess.run(
        [sys.executable, "-m", "exporter", "inspect", f"--docker.host=unix://{tmp_path}/no.sock"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert partial.returncode == 0
    assert "socket does not exist" in partial.stdout
    unreadable = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "inspect",
            f"--docker.host=unix://{tmp_path}/no.sock",
            f"--path.procfs={tmp_path}",
            # The firewall, the link dump and the conntrack table need neither: leave only
            # what can fail here.
            "--no-collector.network",
            "--no-collector.nat",
            "--no-collector.firewall",
            "--no-collector.conntrack",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreadable.returncode == 1
    assert "is --path.procfs a procfs" in unreadable.stdout


def test_without_net_admin_pairs_are_still_made(containers: Containers) -> None:
    c = containers.run("nonetadmin")
    setpriv = shutil.which("setpriv")
    assert setpriv
    # root, minus CAP_NET_ADMIN: peer names need it (IFLA_IF_NETNSID), pairing does not.
    no_net_admin = (setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin")
    with exporter_process("--sample.interval=1s", wrapper=no_net_admin) as (base, proc):
        wait_for(lambda: success(base, "network") == 1 and success(base, "containers") == 1)
        samples = parse(get(base + "/metrics"))
        assert (
            value(
                samples,
                "docker_host_privilege_missing",
                collector="network",
                capability="CAP_NET_ADMIN",
            )
            == 1
        )
        paired = select(samples, "docker_host_veth_info", container=c.name)
        assert [s.labels["container_interface"] for s in paired] == [""]
        assert not select(samples, "docker_host_veth_orphaned")
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert "needs CAP_NET_ADMIN" in out


def test_every_collector_only_ever_gets(root: None, engine: Any, containers: Containers) -> None:
    """A full cycle of every collector through a recording proxy: GET, and nothing else."""
    containers.run("observed", ports={"80/tcp": 18484})
    workdir = Path(tempfile.mkdtemp(prefix="dhe-"))
    proxy = RecordingProxy(workdir / "docker.sock")
    try:
        with exporter_process(
            "--sample.interval=1s",
            "--collector.layers.interval=1s",
            f"--docker.host=unix://{workdir / 'docker.sock'}",
        ) as (base, _):

            def all_succeeded() -> bool:
                states = select(parse(get(base + "/metrics")), "docker_host_collector_success")
                return len(states) == len(all_collectors()) and all(s.value == 1 for s in states)

            wait_for(all_succeeded, timeout=60)
        paths = {line.split(" ")[1].split("?")[0].split("/", 2)[-1] for line in proxy.request_lines}
        for endpoint in ("version", "containers/json", "networks", "info", "events", "system/df"):
            assert any(p.endswith(endpoint) for p in paths), (endpoint, sorted(paths))
        assert proxy.methods == {"GET"}, sorted(set(proxy.request_lines))
    finally:
        proxy.close()
        shutil.rmtree(workdir, ignore_errors=True)
