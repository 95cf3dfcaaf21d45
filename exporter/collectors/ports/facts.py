"""What the ports collector observed for the published ports of running containers: what
listens inside each container's network namespace, the userland proxies running, dockerd's
userland-proxy setting. The rest of a port's paths (DNAT, FORWARD, veth, bridge port, the
per-port MASQUERADE) is other collectors' facts, joined in judge.py."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.docker_api import ContainerRecord, DockerNetwork
from exporter.readers.proc_net import BoundSocket, ProxyProcess

NAME = "ports"  # the collector's name: --collector.ports, its series' collector label


@dataclass(frozen=True)
class ContainerListeners:
    """The sockets taking new traffic in one container's network namespace, read through its
    PID 1; error says why they could not be read (then nothing is judged about them)."""

    container_id: str
    pid: int
    sockets: tuple[BoundSocket, ...]
    error: str | None = None
    refused: bool = False  # the read was refused (needs CAP_SYS_PTRACE), not a vanished process
    start_ticks: int = 0  # PID 1's start time: with pid, which process was read


@dataclass(frozen=True)
class PortsFacts:
    # Running containers that publish ports, and Docker's networks (the Engine API's list);
    # None when the Engine API could not be read (then nothing is judged).
    containers: tuple[ContainerRecord, ...] | None
    networks: tuple[DockerNetwork, ...]
    listeners: tuple[ContainerListeners, ...]
    proxies: tuple[ProxyProcess, ...]
    # --userland-proxy as the dockerd serving --docker.host resolves it: its flag, else its
    # daemon.json, else on (the default); None when that could not be told.
    userland_proxy: bool | None
    # Keys (judge.suspect_keys) that looked broken in a first reading a moment before this one:
    # only those may be reported broken.
    earlier_suspects: tuple[str, ...] = ()
