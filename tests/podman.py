"""Podman containers for tests: a namespace with a veth that is not Docker's.

Debian 12's podman (4.3, CNI: bridge `cni-podman0`; netavark would call it `podman0`) runs as root
on the test bed. Two facts of these machines (DESIGN.md section 5):
- runc refuses to start a container whose rlimits are not given below the hard limit, so every
  run passes `--ulimit nofile=N:N --ulimit nproc=4096:4096`, N the hard limit of open files;
- no registry is reachable: the image is `podman import` of the busybox root filesystem the
  Docker base image is made of (scripts/testbed.sh).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PODMAN_IMAGE = "localhost/dhe-test/busybox:latest"
PODMAN_LABEL = "dhe-test"
NPROC = 4096


@dataclass(frozen=True)
class PodmanContainer:
    name: str
    id: str
    pid: int  # its PID 1, as the host sees it
    network: str  # the Podman network it is on
    bridge: str  # that network's host bridge


def podman(*args: str, timeout: float = 60) -> str:
    """Runs podman; its stdout. A failure raises with podman's own message."""
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


def podman_ready() -> str | None:
    """None if podman and the test image are there; else what is missing."""
    if shutil.which("podman") is None:
        return "podman not installed (Debian package podman; run scripts/testbed.sh)"
    exists = subprocess.run(
        ["podman", "image", "exists", PODMAN_IMAGE], capture_output=True, timeout=60, check=False
    )
    if exists.returncode != 0:
        return f"no Podman image {PODMAN_IMAGE} (run scripts/testbed.sh)"
    return None


def ulimit_args() -> list[str]:
    """Explicit rlimits below the hard limits: without them runc fails to set RLIMIT_NPROC
    ("error setting rlimit type 7: operation not permitted") on these machines."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if nofile == resource.RLIM_INFINITY:
        nofile = 1 << 20
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = NPROC if nproc == resource.RLIM_INFINITY else min(NPROC, nproc)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


@contextmanager
def podman_container(
    name: str, *, network: str = "podman", command: tuple[str, ...] = ("sleep", "3600")
) -> Iterator[PodmanContainer]:
    """A sleeping busybox Podman container on `network` (by default Podman's default bridge
    network), named with a unique prefix; removed on exit, with its veth and namespace."""
    full = f"dhe-{uuid.uuid4().hex[:6]}-{name}"
    podman(
        "run",
        "-d",
        "--name",
        full,
        "--label",
        f"{PODMAN_LABEL}=1",
        "--network",
        network,
        *ulimit_args(),
        PODMAN_IMAGE,
        *command,
    )
    try:
        (info,) = json.loads(podman("container", "inspect", full))
        (net,) = json.loads(podman("network", "inspect", network))
        yield PodmanContainer(
            name=full,
            id=info["Id"],
            pid=int(info["State"]["Pid"]),
            network=network,
            bridge=net["network_interface"],
        )
    finally:
        subprocess.run(
            ["podman", "rm", "--force", "--time", "0", full],
            capture_output=True,
            timeout=60,
            check=False,
        )
