"""Fault matrix on the real engine and kernel: the exporter's own process under each fault.

In every case: scrapes answer (they render the last snapshot: a scrape that returns while the
exporter's call to a hung dockerd is still waiting shows they never wait on a run), the failing
collector reports docker_host_collector_success 0 and logs its reason once per change of state
(not once per interval), the other collectors keep serving success 1 with their facts, the
exporter recovers by itself when the fault goes, and no fault leaves threads, file descriptors
or sockets piling up (counted in /proc/PID before, during several intervals, and after).

Faults: the Docker API slow (below and above the run timeout) and hanging, each behind a proxy to
a real dockerd that is then made well again; the Docker socket missing, then appearing;
--path.procfs not a procfs, then one mounted there; a procfs mounted hidepid=invisible, then
remounted hidepid=off; libiptc/libxtables hidden while the kernel has a legacy nat table; and
each capability missing on its own (what it costs). Mounts are made only in the exporter's own
private mount namespace (unshare -m), never in the host's.

Everything the exporter judges is the module's own: a dockerd of its own (tests/own_dockerd.py's
netns_dockerd: its roots, socket and containerd, managing iptables in a network namespace of its
own, dhe-fo-*, on a bridge there), the victim container on it, and the exporter started in that
namespace (the test's thread steps in while it runs, so scrapes reach the exporter's loopback
there): its links, veths, nf_tables rules, legacy nat table and conntrack table are that
namespace's. What it shares with the host is read only: /proc (processes are the host's), the
kernel's modules and the host engine's test image (loaded into its dockerd once). So the module
is `isolated` (tests/conftest.py): it runs beside the host group, and the host group's tests,
which change the host's links and containers, change nothing it judges.

The layers collector stays off: it samples /system/df, the engine's most expensive call, every 2
minutes by default, and runs on the same DockerReader as the containers collector, whose faults
are covered here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_IMAGE, unavailable
from tests.helpers import Sample, exporter_process, get, parse, select, value, wait_for
from tests.own_dockerd import NetnsDockerd, netns_dockerd
from tests.sockets import FaultyDocker

# isolated (tests/conftest.py): its dockerd, bridge, veth, firewall and exporter are in a
# network namespace of its own; it only reads the host's /proc.
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

# 2 s (a 1.6 s run timeout), not 1 s: with both cores busy (stress-ng --cpu 2) a healthy
# containers run through the proxy took over 0.8 s, and "the others keep serving" failed.
INTERVAL = 2.0
TIMEOUT = 0.8 * INTERVAL  # --sample.timeout is capped at 80% of the interval
BASE_ARGS = (f"--sample.interval={INTERVAL:g}s", "--no-collector.layers")
COLLECTORS = ("containers", "processes", "network", "nat", "firewall", "daemon")
# What a fault may add for a while (a connection stuck in a hung call, a pool refilled).
SLACK_THREADS, SLACK_FDS, SLACK_SOCKETS = 1, 4, 4
# The own dockerd's bridge, in its namespace (the name is free there): docker0's counterpart.
BRIDGE = "dhe-fo-br0"


# -- watching the exporter ------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    threads: int
    fds: int
    sockets: int

    def within(self, baseline: Usage) -> bool:
        return (
            self.threads <= baseline.threads + SLACK_THREADS
            and self.fds <= baseline.fds + SLACK_FDS
            and self.sockets <= baseline.sockets + SLACK_SOCKETS
        )


def _count(pid: int) -> tuple[int, int, int]:
    threads = len(os.listdir(f"/proc/{pid}/task"))
    fds = sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed between the listing and the readlink
        fds += 1
        sockets += target.startswith("socket:")
    return threads, fds, sockets


def usage(pid: int, readings: int = 8, spacing: float = 0.05) -> Usage:
    """Threads, open fds and the sockets among them: the least of a few readings over ~0.4 s.

    What stays open is in every reading; what a collector holds only for the length of its run
    (the network collector opens each container's /proc/PID/ns/net, one fd each) is not, and
    neither is the thread serving a scrape."""
    counts = []
    for _ in range(readings):
        counts.append(_count(pid))
        time.sleep(spacing)
    return Usage(*(min(c[i] for c in counts) for i in range(3)))


@dataclass
class Exporter:
    base: str
    proc: subprocess.Popen[str]
    latencies: list[float] = field(default_factory=list)
    log: str = ""
    # The end of the last hold: what the test watched, every scrape checked. A run that
    # fails after it (a healthy call past the run timeout on a loaded machine, while the test
    # reads usage or stops the exporter) is no part of the fault judged: lines() leaves it out.
    watched_until: float | None = None

    def scrape(self) -> list[Sample]:
        started = time.monotonic()
        body = get(self.base + "/metrics", timeout=5)
        self.latencies.append(time.monotonic() - started)
        return parse(body)

    def states(self, samples: list[Sample] | None = None) -> dict[str, float]:
        found = select(samples or self.scrape(), "docker_host_collector_success")
        return {s.labels["collector"]: s.value for s in found}

    def wait_states(self, timeout: float = 45.0, **expected: int) -> list[Sample]:
        """Scrapes until each named collector's success is as given; the last scrape."""
        last: list[list[Sample]] = [[]]

        def matches() -> bool:
            last[0] = self.scrape()
            states = self.states(last[0])
            return all(states.get(name) == want for name, want in expected.items())

        try:
            wait_for(matches, timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(f"wanted {expected}, have {self.states(last[0])}") from None
        return last[0]

    def hold(
        self, seconds: float, check: Callable[[list[Sample]], None] | None = None
    ) -> list[Usage]:
        """Several intervals of scrapes (each one checked) and usage readings."""
        usages = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            samples = self.scrape()
            if check is not None:
                check(samples)
            usages.append(usage(self.proc.pid))
        self.watched_until = time.time()
        return usages

    def usage(self) -> Usage:
        return usage(self.proc.pid)

    def stop(self) -> str:
        self.proc.terminate()
        self.log, _ = self.proc.communicate(timeout=15)
        return self.log

    def lines(self, msg: str, collector: str | None = None) -> list[str]:
        who = re.compile(rf"collector={collector or '[a-z]+'}(\s|$)")
        return [
            line
            for line in self.log.splitlines()
            if f'msg="{msg}"' in line and who.search(line) and self._watched(line)
        ]

    def _watched(self, line: str) -> bool:
        stamp = re.match(r"ts=(\S+)Z ", line)
        if self.watched_until is None or stamp is None:
            return True
        logged = datetime.strptime(stamp[1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        return logged.timestamp() <= self.watched_until


@contextmanager
def exporter(own: NetnsDockerd, *args: str, wrapper: Sequence[str] = ()) -> Iterator[Exporter]:
    """The exporter in the own dockerd's network namespace, on its socket unless args name
    another. The calling thread is in that namespace meanwhile: the exporter (its child) starts
    there, and the scrapes reach it on the loopback there."""
    named = any(a.startswith("--docker.host=") for a in args)
    socket = () if named else (f"--docker.host={own.host}",)
    with (
        own.entered(),
        exporter_process(*BASE_ARGS, *socket, *args, wrapper=wrapper) as (base, proc),
    ):
        yield Exporter(base, proc)


def assert_bounded(name: str, before: Usage, during: list[Usage], after: Usage) -> None:
    worst = Usage(*(max(getattr(u, f) for u in during) for f in ("threads", "fds", "sockets")))
    print(f"{name}: before {before}, worst during {worst}, after {after}")  # shown by -s
    assert worst.within(before), f"{name}: piled up during the fault: {before} -> {worst}"
    assert after.within(before), f"{name}: not back after the fault: {before} -> {after}"


def assert_served(run: Exporter) -> None:
    """Scrapes were made, each answered within get()'s timeout; how long they took is for the
    benchmarks (bench.host_bench's scrape percentiles), not a bound here."""
    assert run.latencies, "no scrape was made"
    print(f"{len(run.latencies)} scrapes, slowest {max(run.latencies) * 1000:.1f} ms")


def scrape_inside_a_hung_call(run: Exporter, proxy: FaultyDocker) -> None:
    """Until one scrape begins and ends while the same call of the exporter's to the hung
    dockerd waits throughout: the scrape did not wait for the run that made that call."""

    call: list[frozenset[int]] = []

    def inside() -> bool:
        before = proxy.waiting()
        if not before:
            return False
        run.scrape()
        call[:] = [before & proxy.waiting()]
        return bool(call[0])

    wait_for(inside, timeout=60, interval=0.05)
    # And that call does end, by the exporter's own timeout while dockerd still hangs: what
    # waiting() saw was a call in progress, not a connection left open.
    wait_for(lambda: not call[0] & proxy.waiting(), timeout=30)


def assert_logged_once(run: Exporter, collector: str, reason: str) -> None:
    """One failure line (with the reason) and one recovery line for one fault."""
    failed = run.lines("collector failed", collector)
    assert len(failed) == 1, f"{collector}: {len(failed)} failure lines:\n" + "\n".join(failed)
    assert reason in failed[0], failed[0]
    assert len(run.lines("collector recovered", collector)) == 1, run.log


def serving(samples: list[Sample], name: str, ident: str) -> None:
    """The facts a healthy collector serves about our container (or, for nat and daemon, the
    own dockerd's namespace), beyond its success 1."""
    if name == "containers":
        assert select(samples, "docker_host_container_info", container=ident), name
    elif name == "processes":
        assert select(samples, "docker_host_container_pid1_info", container=ident), name
        # Counted in the host's /proc, which the module shares (read only): ours is among them.
        assert value(samples, "docker_host_daemon_processes", process="dockerd") >= 1
    elif name == "network":
        assert select(samples, "docker_host_bridge_info", bridge=BRIDGE), name
        assert select(samples, "docker_host_veth_info", container=ident), name
    elif name == "nat":
        assert value(samples, "docker_host_nat_backend_readable", backend="nftables") == 1
    # daemon: success alone. Behind a proxy socket, which dockerd serves it is a guess that
    # fails while a second dockerd (another test's) runs.


def check_states(
    failing: Mapping[str, float], ident: str, facts: Sequence[str] = COLLECTORS
) -> Callable[[list[Sample]], None]:
    """Every scrape: the failing collectors at 0, every other one at 1 with its facts."""

    def check(samples: list[Sample]) -> None:
        states = {
            s.labels["collector"]: s.value for s in select(samples, "docker_host_collector_success")
        }
        for name in COLLECTORS:
            want = failing.get(name, 1)
            assert states.get(name) == want, f"{name}: success {states.get(name)}, want {want}"
            if want == 1 and name in facts:
                serving(samples, name, ident)

    return check


@pytest.fixture(scope="module")
def own(engine: Any) -> Iterator[NetnsDockerd]:
    """The module's dockerd, in a network namespace of its own (dhe-fo-*), managing iptables
    there as the host's does on the host (nf_tables through iptables-nft).

    With a legacy nat table there too, as on a host where something once ran iptables-legacy
    (this test bed's host has one): the legacy backend is then read in every case, as on the
    host. The directory is world-traversable: `nobody` is refused by the socket itself
    (root:docker 0660), as on a host, not by a directory on the way."""
    with netns_dockerd("dhe-fo-", {"iptables": True}, BRIDGE) as made:
        made.directory.chmod(0o755)
        made.run("iptables-legacy", "-t", "nat", "-S")
        yield made


@pytest.fixture(scope="module")
def victim(own: NetnsDockerd) -> Iterator[Any]:
    """One container of ours for the whole module, on the own dockerd: its facts are what
    "keep serving" means."""
    client = own.client()
    container = client.containers.run(
        BASE_IMAGE,
        ["sh", "-c", "sleep 3600"],
        name=f"dhe-fo-victim-{uuid.uuid4().hex[:6]}",
        detach=True,
        labels={"dhe-fo": "1"},
    )
    try:
        container.reload()
        yield container
    finally:
        container.remove(force=True)
        client.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Under /tmp and world-traversable: the unprivileged exporters must reach what is in it.
    path = Path(tempfile.mkdtemp(prefix="dhe-fo-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def in_private_mounts(script: str) -> tuple[str, ...]:
    """A wrapper: the exporter in a mount namespace of its own, after `script` ran there."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is part of the test bed"
    return (unshare, "-m", "--propagation", "private", "sh", "-ec", f'{script}\nexec "$@"', "sh")


def in_exporters_mounts(run: Exporter, *command: str) -> None:
    subprocess.run(["nsenter", "-t", str(run.proc.pid), "-m", *command], check=True, timeout=30)


# -- a, b: the Docker API slow, hanging, then well again ----------------------------------------


def test_docker_api_slow_below_and_above_the_timeout_then_fast(
    own: NetnsDockerd, victim: Any, workdir: Path
) -> None:
    # A 2 s interval here (a 1.6 s run timeout): room for a slow answer on a loaded engine.
    interval = 2.0
    proxy = FaultyDocker(workdir / "docker.sock", upstream=own.socket)
    try:
        with exporter(
            own, f"--docker.host=unix://{proxy.path}", f"--sample.interval={interval:g}s"
        ) as run:
            run.wait_states(**dict.fromkeys(COLLECTORS, 1))
            run.hold(interval)  # the connection pools fill
            before = run.usage()
            healthy = check_states({}, victim.name)

            # Below the timeout: each answer 0.2 s late (a run makes one to four calls); it
            # still succeeds, only slower.
            proxy.forward(delay=0.2)
            wait_for(lambda: _duration(run, "containers") >= 0.2, timeout=30)
            during = run.hold(2 * interval, healthy)
            assert _duration(run, "containers") >= 0.2

            # Above it: each answer 2 s late. The containers collector times out; nat and
            # daemon use the Engine API only for part of their facts and keep serving the rest.
            proxy.forward(delay=2.0)
            run.wait_states(containers=0)
            during += run.hold(3 * interval, check_states({"containers": 0}, victim.name))

            # Fast again: it recovers by itself.
            proxy.forward(delay=0.0)
            run.wait_states(**dict.fromkeys(COLLECTORS, 1))
            run.hold(interval, healthy)
            after = run.usage()
            run.stop()
        assert_served(run)
        assert_logged_once(run, "containers", "timed out")
        for name in ("processes", "network", "nat", "daemon"):
            assert not run.lines("collector failed", name), run.log
        assert_bounded("slow docker", before, during, after)
    finally:
        proxy.close()


def _duration(run: Exporter, collector: str) -> float:
    return value(run.scrape(), "docker_host_collector_duration_seconds", collector=collector)


def test_docker_api_hanging_then_back(own: NetnsDockerd, victim: Any, workdir: Path) -> None:
    proxy = FaultyDocker(workdir / "docker.sock", upstream=own.socket)
    try:
        with exporter(own, f"--docker.host=unix://{proxy.path}") as run:
            run.wait_states(**dict.fromkeys(COLLECTORS, 1))
            run.hold(2 * INTERVAL)
            before = run.usage()

            proxy.hang()
            run.wait_states(containers=0)
            scrape_inside_a_hung_call(run, proxy)
            during = run.hold(6 * INTERVAL, check_states({"containers": 0}, victim.name))
            threads_hung = run.usage().threads

            proxy.forward()
            run.wait_states(**dict.fromkeys(COLLECTORS, 1))
            run.hold(3 * INTERVAL, check_states({}, victim.name))
            after = run.usage()
            run.stop()
        assert_served(run)
        # One stuck worker is not given a second job: no thread per interval.
        assert threads_hung <= before.threads + SLACK_THREADS
        assert_logged_once(run, "containers", "timed out")
        for name in ("processes", "network", "nat", "daemon"):
            assert not run.lines("collector failed", name), run.log
        assert_bounded("hanging docker", before, during, after)
    finally:
        proxy.close()


# -- c: the Docker socket missing, then appearing --------------------------------------------------


def test_docker_socket_missing_then_appearing(
    own: NetnsDockerd, victim: Any, workdir: Path
) -> None:
    sock = workdir / "docker.sock"
    proxy: FaultyDocker | None = None
    try:
        with exporter(own, f"--docker.host=unix://{sock}") as run:
            run.wait_states(containers=0, processes=1, network=1, nat=1, daemon=1)
            before = run.usage()
            # Without the container list, /proc and netlink series are labeled by short id.
            during = run.hold(4 * INTERVAL, check_states({"containers": 0}, victim.id[:12]))
            samples = run.scrape()
            # nat judges nothing without the Engine API; daemon has no /info.
            assert not select(samples, "docker_host_nat_masquerade_missing")
            assert not select(samples, "docker_host_daemon_info")

            proxy = FaultyDocker(sock, upstream=own.socket)
            run.wait_states(**dict.fromkeys(COLLECTORS, 1))
            run.hold(3 * INTERVAL, check_states({}, victim.name))
            samples = run.scrape()
            assert select(samples, "docker_host_nat_masquerade_missing")
            assert select(samples, "docker_host_daemon_info")
            # The baseline with a daemon is taken now: while it was missing, no connection was.
            reached = run.usage()
            steady = run.hold(3 * INTERVAL, check_states({}, victim.name))
            after = run.usage()
            run.stop()
        assert_served(run)
        assert_logged_once(run, "containers", "socket does not exist")
        for name in ("processes", "network", "nat", "daemon"):
            assert not run.lines("collector failed", name), run.log
        assert_bounded("docker socket missing", before, during, before)
        assert_bounded("docker socket appeared", reached, steady, after)
    finally:
        if proxy is not None:
            proxy.close()


# -- d: /proc errors -------------------------------------------------------------------------------


def test_procfs_path_not_a_procfs_then_mounted(
    own: NetnsDockerd, victim: Any, workdir: Path
) -> None:
    procfs = workdir / "proc"
    procfs.mkdir()
    failing = {"processes": 0, "network": 0, "daemon": 0}
    with exporter(own, f"--path.procfs={procfs}", wrapper=in_private_mounts("true")) as run:
        run.wait_states(containers=1, nat=1, **failing)
        before = run.usage()
        during = run.hold(4 * INTERVAL, check_states(failing, victim.name))

        # A procfs appears there (a late bind mount of the host's /proc, say): it recovers.
        in_exporters_mounts(run, "mount", "-t", "proc", "proc", str(procfs))
        run.wait_states(**dict.fromkeys(COLLECTORS, 1))
        # The recovered collectors' change feeds (the proc connector, rtnetlink notifications)
        # are open from here on, as they would have been from the start: the baseline for what
        # follows, which must not grow.
        run.hold(INTERVAL, check_states({}, victim.name))
        reached = run.usage()
        steady = run.hold(3 * INTERVAL, check_states({}, victim.name))
        after = run.usage()
        run.stop()
    assert_served(run)
    for name in failing:
        assert_logged_once(run, name, "is --path.procfs a procfs?")
    for name in ("containers", "nat"):
        assert not run.lines("collector failed", name), run.log
    assert_bounded("not a procfs", before, during, before)
    assert_bounded("procfs mounted", reached, steady, after)


def test_procfs_mounted_hidepid_invisible_then_not(
    own: NetnsDockerd, victim: Any, workdir: Path
) -> None:
    """An unprivileged exporter (a docker-group user with CAP_NET_ADMIN and CAP_NET_RAW for the
    firewall) on a procfs that hides other users' processes: /proc/1, dockerd and every shim
    are invisible to it."""
    procfs = workdir / "proc"
    procfs.mkdir()
    proxy = FaultyDocker(workdir / "docker.sock", upstream=own.socket)
    proxy.path.chmod(0o666)  # what the docker group grants
    as_user = (
        "setpriv --reuid=65534 --regid=65534 --clear-groups "
        "--inh-caps=+net_admin,+net_raw --ambient-caps=+net_admin,+net_raw"
    )
    wrapper = in_private_mounts(
        f'mount -t proc -o hidepid=invisible proc {shlex.quote(str(procfs))}\nset -- {as_user} "$@"'
    )
    failing = {"processes": 0, "network": 0}
    try:
        with exporter(
            own, f"--path.procfs={procfs}", f"--docker.host=unix://{proxy.path}", wrapper=wrapper
        ) as run:
            run.wait_states(containers=1, nat=1, daemon=1, **failing)
            before = run.usage()
            # The daemon collector finds no dockerd to hold its file against: nothing to show.
            during = run.hold(
                4 * INTERVAL, check_states(failing, victim.name, ("containers", "nat"))
            )

            # Visible again (the namespaces stay refused to nobody, as without hidepid).
            in_exporters_mounts(run, "mount", "-o", "remount,hidepid=off", str(procfs))
            run.wait_states(**dict.fromkeys(COLLECTORS, 1))
            run.hold(3 * INTERVAL, check_states({}, victim.name, ("containers", "processes")))
            after = run.usage()
            run.stop()
        assert_served(run)
        for name in ("containers", "nat", "daemon"):
            assert not run.lines("collector failed", name), run.log
        assert_bounded("hidepid", before, during, after)
        for name in failing:
            # Says why: not "is it the host's procfs?" but that processes are hidden from it.
            assert_logged_once(run, name, "hidepid")
    finally:
        proxy.close()


# -- e: the iptables libraries absent -------------------------------------------------------------


def _shared_object(name: str) -> str:
    listing = subprocess.run(
        ["ldconfig", "-p"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    for line in listing.splitlines():
        if line.strip().startswith(name) and "=>" in line:
            return os.path.realpath(line.split("=>", 1)[1].strip())
    unavailable(f"{name} not installed (Debian package iptables)")
    raise AssertionError  # unreachable: unavailable() skips or fails


@pytest.fixture
def legacy_nat(own: NetnsDockerd) -> None:
    """The legacy backend is read only when the exporter's network namespace has a legacy nat
    table: make sure the own dockerd's has one, as any host does once something ran
    iptables-legacy (it loads iptable_nat; the table is made empty, in that namespace only)."""
    own.run("iptables-legacy", "-t", "nat", "-S")
    assert "nat" in own.run("cat", "/proc/net/ip_tables_names").split()


def test_iptables_libraries_absent_cost_nothing(
    own: NetnsDockerd, victim: Any, legacy_nat: None
) -> None:
    # The legacy table is read over getsockopt as libiptc reads it, not through libiptc: a host
    # without the iptables libraries (or a slim image) loses nothing.
    libraries = [_shared_object("libip4tc.so."), _shared_object("libxtables.so.")]
    hide = "\n".join(f"mount --bind /dev/null {shlex.quote(lib)}" for lib in libraries)
    with exporter(own, wrapper=in_private_mounts(hide)) as run:
        samples = run.wait_states(**dict.fromkeys(COLLECTORS, 1))
        before = run.usage()
        during = run.hold(4 * INTERVAL, check_states({}, victim.name))
        samples = run.scrape()
        after = run.usage()
        run.stop()
    assert value(samples, "docker_host_nat_backend_readable", backend="legacy") == 1
    assert value(samples, "docker_host_nat_backend_readable", backend="nftables") == 1
    assert select(samples, "docker_host_nat_masquerade_rules", backend="nftables")
    assert not select(samples, "docker_host_privilege_missing", collector="nat")
    assert_served(run)
    assert not run.lines("collector failed"), run.log
    assert not [line for line in run.log.splitlines() if "backend=legacy" in line], run.log
    assert_bounded("iptables libraries absent", before, during, after)


# -- f: each capability missing on its own ---------------------------------------------------------

FOUR = "+sys_ptrace,+dac_read_search,+net_admin,+net_raw"  # the README's container recipe


@dataclass(frozen=True)
class Cost:
    """What running with these privileges costs, as an operator sees it in /metrics."""

    setpriv: tuple[str, ...]
    failing: Mapping[str, str] = field(default_factory=dict)  # collector -> logged reason
    privilege_missing: frozenset[tuple[str, str]] = frozenset()
    namespaces: bool = True  # container_namespace_info of our container
    paired: bool = True  # veth_info of our container
    peer_named: bool = True  # container_interface on it
    backends: Mapping[str, int] = field(
        default_factory=lambda: {"nftables": 1, "legacy": 1}
    )  # nat_backend_readable, when nat serves
    daemon_file: bool = True  # daemon.json readable through /proc/<dockerd>/root
    log: tuple[str, ...] = ()


COSTS = {
    # Root without CAP_SYS_PTRACE still reads the namespaces of processes whose capabilities
    # are a subset of its own (containers with Docker's default set); not dockerd's root.
    "root-CAP_SYS_PTRACE": Cost(
        ("--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"),
        privilege_missing=frozenset({("daemon", "CAP_SYS_PTRACE")}),
        daemon_file=False,
    ),
    # Neither firewall backend: the nat and firewall collectors say so (readable 0), neither
    # fails;
    # nor the conntrack dump (the table's level, from procfs, stays).
    "root-CAP_NET_ADMIN": Cost(
        ("--bounding-set=-net_admin", "--inh-caps=-net_admin"),
        privilege_missing=frozenset(
            {
                ("network", "CAP_NET_ADMIN"),
                ("nat", "CAP_NET_ADMIN"),
                ("firewall", "CAP_NET_ADMIN"),
                ("conntrack", "CAP_NET_ADMIN"),
            }
        ),
        peer_named=False,
        backends={"nftables": 0, "legacy": 0},
        log=("needs CAP_NET_ADMIN",),
    ),
    # libiptc opens a raw socket before it asks for the table.
    "root-CAP_NET_RAW": Cost(
        ("--bounding-set=-net_raw", "--inh-caps=-net_raw"),
        privilege_missing=frozenset({("nat", "CAP_NET_RAW"), ("firewall", "CAP_NET_RAW")}),
        backends={"nftables": 1, "legacy": 0},
    ),
    # Root keeps CAP_DAC_OVERRIDE: nothing is lost.
    "root-CAP_DAC_READ_SEARCH": Cost(
        ("--bounding-set=-dac_read_search", "--inh-caps=-dac_read_search")
    ),
    "four": Cost((f"--bounding-set=-all,{FOUR}", "--inh-caps=-all")),
    "four-CAP_DAC_READ_SEARCH": Cost(
        ("--bounding-set=-all,+sys_ptrace,+net_admin,+net_raw", "--inh-caps=-all")
    ),
    "four-CAP_SYS_PTRACE": Cost(
        ("--bounding-set=-all,+dac_read_search,+net_admin,+net_raw", "--inh-caps=-all"),
        privilege_missing=frozenset(
            {
                ("processes", "CAP_SYS_PTRACE"),
                ("network", "CAP_SYS_PTRACE"),
                ("daemon", "CAP_SYS_PTRACE"),
            }
        ),
        namespaces=False,
        paired=False,
        peer_named=False,
        daemon_file=False,
        log=("needs CAP_SYS_PTRACE",),
    ),
    "nobody": Cost(
        ("--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"),
        failing={"containers": "permission denied on the socket"},
        privilege_missing=frozenset(
            {
                ("processes", "CAP_SYS_PTRACE"),
                ("network", "CAP_SYS_PTRACE"),
                ("network", "CAP_NET_ADMIN"),
                ("daemon", "CAP_SYS_PTRACE"),
                ("nat", "CAP_NET_ADMIN"),
                ("nat", "CAP_DAC_READ_SEARCH"),  # /proc/net/ip_tables_names is root's, 0440
                ("firewall", "CAP_NET_ADMIN"),
                ("firewall", "CAP_DAC_READ_SEARCH"),
                ("conntrack", "CAP_NET_ADMIN"),
            }
        ),
        backends={"nftables": 0, "legacy": 0},
        namespaces=False,
        paired=False,
        peer_named=False,
        daemon_file=False,
    ),
}


def missing_privileges(samples: list[Sample]) -> set[tuple[str, str]]:
    return {
        (s.labels["collector"], s.labels["capability"])
        for s in select(samples, "docker_host_privilege_missing")
    }


@pytest.mark.parametrize("case", list(COSTS))
def test_what_each_missing_capability_costs(
    own: NetnsDockerd, victim: Any, legacy_nat: None, case: str
) -> None:
    cost = COSTS[case]
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is part of the test bed"
    # Without the container list, the other collectors label by short id.
    ident = victim.id[:12] if "containers" in cost.failing else victim.name
    with exporter(own, wrapper=(setpriv, *cost.setpriv)) as run:
        expected = {name: 0 if name in cost.failing else 1 for name in COLLECTORS}
        run.wait_states(**expected)
        before = run.usage()
        during = run.hold(3 * INTERVAL, check_states(dict.fromkeys(cost.failing, 0), ident, ()))
        samples = run.scrape()
        # Other modules' containers start beside this one, and the exporter reads every shim
        # on the host: a container's runc init is not dumpable, so without CAP_SYS_PTRACE its
        # namespaces are briefly unreadable. What a capability costs is the steady state: the
        # missing set the exporter settles on within a few runs.
        missing = missing_privileges(samples)
        if missing != cost.privilege_missing:

            def settled() -> bool:
                nonlocal missing
                missing = missing_privileges(run.scrape())
                return missing == cost.privilege_missing

            with contextlib.suppress(AssertionError):
                wait_for(settled, timeout=30, interval=0.5)
        after = run.usage()
        run.stop()
    assert_served(run)
    assert_bounded(case, before, during, after)
    for name, reason in cost.failing.items():
        failed = run.lines("collector failed", name)
        assert len(failed) == 1 and reason in failed[0], failed
    for text in cost.log:
        assert text in run.log, run.log

    # What the container's own series say.
    assert select(samples, "docker_host_container_pid1_info", container=ident)
    namespaces = select(samples, "docker_host_container_namespace_info", container=ident)
    assert bool(namespaces) == cost.namespaces, namespaces
    unreadable = value(samples, "docker_host_container_namespaces_unreadable", container=ident)
    assert unreadable == (0 if cost.namespaces else 7)
    paired = select(samples, "docker_host_veth_info", container=ident)
    assert bool(paired) == cost.paired, paired
    if paired:
        assert bool(paired[0].labels["container_interface"]) == cost.peer_named, paired
    assert select(samples, "docker_host_bridge_info", bridge=BRIDGE)
    # The namespace's veths (the victim's alone): none judged orphaned.
    assert not select(samples, "docker_host_veth_orphaned")
    if "nat" not in cost.failing:
        readable = {
            s.labels["backend"]: s.value
            for s in select(samples, "docker_host_nat_backend_readable")
        }
        assert readable == cost.backends

    # What it says is missing, and where the README's privileges table is wrong, the bugs.
    # A daemon.json the exporter may not read is not a broken one: no critical alert for it.
    file_valid = select(samples, "docker_host_daemon_config_file_valid")
    assert cost.daemon_file or not [s for s in file_valid if s.value == 0], (
        file_valid,
        [line for line in run.log.splitlines() if "daemon" in line],
    )
    assert missing == cost.privilege_missing
