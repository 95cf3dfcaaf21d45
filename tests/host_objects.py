"""Kernel objects the tests make on the host: orphaned veths of every kind."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import wait_for


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def veth_into(host_name: str, netns: str) -> None:
    """A veth pair: host_name on the host, its peer as eth0 in the named namespace."""
    ip("link", "add", host_name, "type", "veth", "peer", "name", "eth0", "netns", netns)


@contextlib.contextmanager
def orphan_veths() -> Iterator[dict[str, str]]:
    """Three orphans, all on docker0 (which makes them Docker's to judge): a veth whose peer is
    in an `ip netns add` namespace; a veth whose peer's namespace lost its name while a process
    that is no container keeps it alive; a veth pair with both ends on the host.

    Off Docker's bridges the first two would be another runtime's (CNI's, LXC's), never
    orphans: tests/integration/test_real_hosts.py has those."""
    tag = uuid.uuid4().hex[:4]
    made = {
        "netns": f"dho{tag}",
        "lost": f"dhl{tag}",
        "on_bridge": f"dho{tag}v",
        "gone_ns": f"dhl{tag}v",
        "host_pair": f"dhh{tag}v",
    }
    holder: subprocess.Popen[bytes] | None = None
    try:
        ip("netns", "add", made["netns"])
        veth_into(made["on_bridge"], made["netns"])
        ip("link", "set", made["on_bridge"], "master", "docker0")
        ip("netns", "add", made["lost"])
        veth_into(made["gone_ns"], made["lost"])
        ip("link", "set", made["gone_ns"], "master", "docker0")
        holder = subprocess.Popen(["ip", "netns", "exec", made["lost"], "sleep", "600"])
        # Until the sleeper has entered the namespace, deleting its name would free it.
        wait_for(
            lambda: Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep",
            timeout=10,
            interval=0.02,
        )
        ip("netns", "del", made["lost"])
        ip(
            "link",
            "add",
            made["host_pair"],
            "type",
            "veth",
            "peer",
            "name",
            made["host_pair"] + "p",
        )
        ip("link", "set", made["host_pair"], "master", "docker0")
        yield made
    finally:
        for link in (made["on_bridge"], made["gone_ns"], made["host_pair"]):
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", made["netns"]], capture_output=True, check=False)
        if holder is not None:
            holder.kill()
            holder.wait()
