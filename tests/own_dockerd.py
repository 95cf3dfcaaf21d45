"""A dockerd the tests start and control: its own --config-file, --data-root, --exec-root,
--pidfile, socket and bridge, and no iptables, so the host's engine and network are untouched
(the fixture checks docker0 on the way out)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from exporter.settings import Settings
from tests.helpers import Sample, sample_once, wait_for

# A bridge of its own: with --bridge=none dockerd deletes docker0, the host engine's bridge.
BRIDGE = "dhd-br0"


@dataclass
class OwnDockerd:
    directory: Path
    config: Path
    process: subprocess.Popen[bytes]

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


def start_dockerd(directory: Path, config: Path, *flags: str) -> subprocess.Popen[bytes]:
    log = (directory / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--config-file={config}",
            f"--data-root={directory}/root",
            f"--exec-root={directory}/exec",
            f"--pidfile={directory}/docker.pid",
            "-H",
            f"unix://{directory}/docker.sock",
            f"--bridge={BRIDGE}",
            "--iptables=false",
            "--ip6tables=false",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError((directory / "dockerd.log").read_text()[-2000:])
        try:
            client = docker.APIClient(base_url=f"unix://{directory}/docker.sock", version="auto")
            client.close()
            return True
        except docker.errors.DockerException:
            return False

    wait_for(answers, timeout=60, interval=0.2)
    return process


@contextlib.contextmanager
def own_dockerd() -> Iterator[OwnDockerd]:
    # Short paths: containerd's socket under --exec-root must fit a sockaddr_un.
    directory = Path(tempfile.mkdtemp(prefix="dhd-", dir="/tmp"))
    config = directory / "conf" / "daemon.json"  # not /etc/docker: --config-file elsewhere
    config.parent.mkdir()
    config.write_text(json.dumps({"insecure-registries": ["a.example:5000"]}))
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True, timeout=30)
    host_bridge = Path("/sys/class/net/docker0")
    had_host_bridge = host_bridge.exists()
    process = None
    try:
        process = start_dockerd(directory, config, "--storage-driver=vfs")
        yield OwnDockerd(directory, config, process)
    finally:
        if process is not None:
            stop(process)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-R", str(directory)], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)
    assert host_bridge.exists() == had_host_bridge, "the test dockerd touched the host's docker0"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
