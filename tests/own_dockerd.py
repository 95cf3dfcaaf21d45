"""A dockerd the tests start and control: its own --config-file, --data-root, --exec-root,
--pidfile, socket and bridge, and no iptables, so the host's engine and network are untouched
(the fixture checks docker0 on the way out)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from exporter.settings import Settings
from tests.engine_client import timed_client
from tests.helpers import Sample, parse, sample_once, stop, wait_for

# A bridge of its own: with --bridge=none dockerd deletes docker0, the host engine's bridge. Its
# name is the dockerd's directory's (dhd-XXXXXXXX, unique, within IFNAMSIZ), so two own dockerds,
# in two xdist groups or two checkouts' sessions, can run at once.
BRIDGE_PREFIX = "dhd-"


@dataclass
class OwnDockerd:
    directory: Path
    config: Path
    process: subprocess.Popen[bytes]

    @property
    def bridge(self) -> str:
        return self.directory.name

    @property
    def host(self) -> str:
        return f"unix://{self.directory}/docker.sock"

    def write(self, content: str | dict[str, Any]) -> None:
        text = content if isinstance(content, str) else json.dumps(content)
        self.config.write_text(text)
        # mtime resolution: make "modified after the last load" unambiguous.
        later = time.time() + 1
        os.utime(self.config, (later, later))

    def reload(self) -> None:
        before = self.reloads()
        self.process.send_signal(signal.SIGHUP)
        wait_for(lambda: self.reloads() > before, timeout=20)

    def reloads(self) -> int:
        client = docker.APIClient(base_url=self.host, version="auto")
        try:
            return len(
                list(
                    client.events(
                        since=0,
                        until=int(time.time()) + 1,
                        decode=True,
                        filters={"type": ["daemon"], "event": ["reload"]},
                    )
                )
            )
        finally:
            client.close()

    def sample(self) -> list[Sample]:
        snapshot, samples = sample_once(Settings(collectors=("daemon",), docker_host=self.host))
        assert snapshot.collectors["daemon"].success, snapshot.collectors["daemon"].error
        return samples


def dockerd_flags(directory: Path, config: Path, bridge: str, *flags: str) -> tuple[str, ...]:
    """A test's own dockerd's flags: its roots, pid file and socket under the directory, its
    bridge. (Started in a namespace of its own with nsenter, not `ip netns exec`: that one
    remounts /sys, and dockerd then finds no cgroups.)"""
    return (
        f"--config-file={config}",
        f"--data-root={directory}/root",
        f"--exec-root={directory}/exec",
        f"--pidfile={directory}/docker.pid",
        "-H",
        f"unix://{directory}/docker.sock",
        f"--bridge={bridge}",
        *flags,
    )


def start_dockerd(directory: Path, config: Path, *flags: str) -> subprocess.Popen[bytes]:
    """dockerd on the directory's paths and bridge (named as the directory: see BRIDGE_PREFIX)."""
    log = (directory / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            *dockerd_flags(
                directory, config, directory.name, "--iptables=false", "--ip6tables=false", *flags
            ),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    try:
        _wait_answers(process, directory)
    except BaseException:
        stop(process)  # a dockerd left running would be a second one for every later test
        raise
    return process


@contextlib.contextmanager
def own_dockerd() -> Iterator[OwnDockerd]:
    # Short paths: containerd's socket under --exec-root must fit a sockaddr_un.
    directory = Path(tempfile.mkdtemp(prefix=BRIDGE_PREFIX, dir="/tmp"))
    bridge = directory.name
    config = directory / "conf" / "daemon.json"  # not /etc/docker: --config-file elsewhere
    config.parent.mkdir()
    config.write_text(json.dumps({"insecure-registries": ["a.example:5000"]}))
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, timeout=30)
    host_bridge = Path("/sys/class/net/docker0")
    had_host_bridge = host_bridge.exists()
    made = None
    try:
        made = OwnDockerd(
            directory, config, start_dockerd(directory, config, "--storage-driver=vfs")
        )
        yield made
    finally:
        if made is not None:
            stop(made.process)  # the one running now: a test may have restarted it
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-R", str(directory)], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)
    assert host_bridge.exists() == had_host_bridge, "the test dockerd touched the host's docker0"


# -- an IPv6 dockerd that manages iptables and ip6tables, in a network namespace of its own --

# The subnets the tests give Docker: unique local addresses, never routed off this machine.
FIXED_CIDR_V6 = "fd00:d4e::/64"
V6_BRIDGE = "dh6-br0"


@dataclass
class NetnsDockerd:
    """A dockerd that manages a firewall (`iptables` on), in a network namespace of its own: a
    second dockerd managing iptables in the host's namespace would remove and rebuild the
    DOCKER chains the host's dockerd relies on (libnetwork does so at start), and would switch
    forwarding on for the whole host. In its namespace its chains, bridges, veths and sysctls
    are its own, and they go with the namespace."""

    directory: Path
    netns: str
    firewall: str  # "nft" or "legacy": which iptables binaries dockerd ran
    process: subprocess.Popen[bytes]
    command: tuple[str, ...] = ()

    def restart(self) -> None:
        """Stop dockerd and start it again as it was started: it writes its chains anew, as
        after a host's firewall reload wiped them."""
        stop(self.process)
        self.process = _start_in_netns(self.directory, self.command)
        _wait_answers(self.process, self.directory)

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def socket(self) -> str:
        return f"{self.directory}/docker.sock"

    def client(self) -> Any:
        return timed_client(self.host)

    def run(self, *command: str) -> str:
        """A command in the dockerd's network namespace (iptables as dockerd ran it)."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PATH": self.path},
        ).stdout

    @property
    def path(self) -> str:
        return f"{self.directory}/bin:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"

    def sample(self, *collectors: str) -> list[Sample]:
        """One sample of these collectors in the dockerd's network namespace."""
        exposition = self.run(
            sys.executable, "-m", "tests.own_dockerd", "sample", self.host, *collectors
        )
        return parse(exposition)

    def sample_nat(self) -> list[Sample]:
        """One sample of the nat and firewall collectors, run in the dockerd's network namespace
        (where its rules are), against its Engine API."""
        exposition = self.run(sys.executable, "-m", "tests.own_dockerd", "sample-nat", self.host)
        return parse(exposition)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread in the dockerd's network namespace, and back after: the processes
        it starts meanwhile start there, and its TCP connections go to the loopback there (a
        Unix socket's path reaches across namespaces as before)."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        there = os.open(f"/run/netns/{self.netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(there)
            try:
                yield
            finally:
                _setns(back)
        finally:
            os.close(there)
            os.close(back)


# An IPv6 dockerd's: ipv6, ip6tables and iptables on (tests/integration/test_nat_ipv6_on_engine.py).
Ipv6Dockerd = NetnsDockerd

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    """setns(2) for the calling thread alone (os.setns is Python 3.12's)."""
    setns: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).setns
    if setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), "setns")


def _engine_major(binary: str = "dockerd") -> int:
    text = subprocess.run(
        [binary, "--version"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    match = re.search(r"version (\d+)\.", text)
    return int(match.group(1)) if match else 0


@contextlib.contextmanager
def ipv6_dockerd(
    firewall: str = "nft",
    image: str = "dhe-test/busybox:latest",
    extra_config: dict[str, Any] | None = None,
    flags: tuple[str, ...] = (),
) -> Iterator[NetnsDockerd]:
    """A dockerd with `iptables`, `ip6tables` and `ipv6` on, in a network namespace of its own.
    firewall "legacy": dockerd finds iptables and ip6tables on a PATH whose first directory
    links them to the -legacy binaries, as a host that chose iptables-legacy would have.
    extra_config: more daemon.json keys (e.g. userland-proxy off for many published ports).
    flags: more of dockerd's flags (--userland-proxy=false)."""
    config: dict[str, Any] = {
        "ipv6": True,
        "fixed-cidr-v6": FIXED_CIDR_V6,
        "iptables": True,
        "ip6tables": True,
    }
    if _engine_major() < 27:  # ip6tables was experimental until Docker 27
        config["experimental"] = True
    config.update(extra_config or {})
    with netns_dockerd(
        "dh6-", config, V6_BRIDGE, firewall=firewall, image=image, flags=flags
    ) as made:
        yield made


@contextlib.contextmanager
def netns_dockerd(
    prefix: str,
    config: dict[str, Any],
    bridge: str,
    *,
    firewall: str = "nft",
    image: str = "dhe-test/busybox:latest",
    flags: tuple[str, ...] = (),
) -> Iterator[NetnsDockerd]:
    """A dockerd on daemon.json `config` (iptables on by default, as on a host), in a network
    namespace named as its directory (prefix + 8 random characters), on a bridge `bridge` made
    there; `image` loaded from the host's engine. firewall: see ipv6_dockerd."""
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    netns = directory.name
    (directory / "bin").mkdir()
    if firewall == "legacy":
        for tool in ("iptables", "ip6tables"):
            for suffix in ("", "-save", "-restore"):
                target = shutil.which(f"{tool}-legacy{suffix}")
                if target:
                    (directory / "bin" / f"{tool}{suffix}").symlink_to(target)
    (directory / "daemon.json").write_text(json.dumps(config))
    host_bridge = Path("/sys/class/net/docker0")
    had_host_bridge = host_bridge.exists()
    host_ip6_nat = _host_ip6_nat_chains()
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
    process = None
    made: NetnsDockerd | None = None
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True, timeout=30)
        # Forwarding off, as on a fresh host: dockerd switches it on and sets the FORWARD
        # policy to DROP, as it does there (a new namespace may inherit forwarding on, and
        # then dockerd leaves the policy ACCEPT).
        for sysctl in ("net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"):
            subprocess.run(
                ["nsenter", f"--net=/run/netns/{netns}", "sysctl", "-qw", sysctl],
                check=True,
                timeout=30,
            )
        subprocess.run(
            ["ip", "-n", netns, "link", "add", bridge, "type", "bridge"], check=True, timeout=30
        )
        command = (
            "nsenter",
            f"--net=/run/netns/{netns}",
            "dockerd",
            *dockerd_flags(
                directory, directory / "daemon.json", bridge, "--storage-driver=vfs", *flags
            ),
        )
        process = _start_in_netns(directory, command)
        made = NetnsDockerd(directory, netns, firewall, process, command)
        _wait_answers(made.process, made.directory)
        host_engine = timed_client()
        own = made.client()
        try:
            own.images.load(b"".join(host_engine.images.get(image).save(named=True)))
        finally:
            host_engine.close()
            own.close()
        yield made
    finally:
        if process is not None:
            _remove_containers(directory)
            stop(made.process if made is not None else process)
        # The namespace takes dockerd's bridges, veths, iptables and ip6tables chains (both
        # backends) and sysctls with it.
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-R", str(directory)], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)
    assert host_bridge.exists() == had_host_bridge, "the test dockerd touched the host's docker0"
    assert _host_ip6_nat_chains() == host_ip6_nat, "the test dockerd touched the host's ip6tables"


def _start_in_netns(directory: Path, command: tuple[str, ...]) -> subprocess.Popen[bytes]:
    log = (directory / "dockerd.log").open("ab")
    return subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PATH": f"{directory}/bin:{os.environ.get('PATH', '')}"},
    )


def _wait_answers(process: subprocess.Popen[bytes], directory: Path) -> None:
    """Until the dockerd answers on its directory's socket; its log's tail if it exits first."""

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError((directory / "dockerd.log").read_text()[-2000:])
        try:
            docker.APIClient(base_url=f"unix://{directory}/docker.sock", version="auto").close()
            return True
        except docker.errors.DockerException:
            return False

    wait_for(answers, timeout=60, interval=0.2)


def _remove_containers(directory: Path) -> None:
    """Force-remove the dockerd's containers first: stopping dockerd would wait out each
    container's stop timeout (busybox's sleep ignores SIGTERM as PID 1)."""
    with contextlib.suppress(Exception):
        client = timed_client(f"unix://{directory}/docker.sock")
        try:
            for container in client.containers.list(all=True):
                container.remove(force=True)
        finally:
            client.close()


def _host_ip6_nat_chains() -> list[str]:
    found = subprocess.run(
        ["ip6tables", "-t", "nat", "-S"], capture_output=True, text=True, timeout=30, check=False
    )
    return sorted(line for line in found.stdout.splitlines() if line.startswith("-N"))


def _sample_nat(docker_host: str, collectors: tuple[str, ...] = ("nat", "firewall")) -> bytes:
    from exporter.collectors import all_collectors  # noqa: PLC0415
    from exporter.sampler import Sampler  # noqa: PLC0415

    # Both collectors of the firewall reading: one tick, one reading shared.
    settings = Settings(collectors=collectors, docker_host=docker_host)
    defs = [c for c in all_collectors() if c.name in settings.collectors]
    sampler = Sampler(((c, c.source(settings)) for c in defs), settings)
    sampler.sample_once()
    text: bytes = sampler.store.exposition.text
    return text


if __name__ == "__main__" and sys.argv[1:2] == ["sample-nat"]:
    sys.stdout.buffer.write(_sample_nat(sys.argv[2]))
elif __name__ == "__main__" and sys.argv[1:2] == ["sample"]:  # sample <host> <collector>...
    sys.stdout.buffer.write(_sample_nat(sys.argv[2], tuple(sys.argv[3:])))
