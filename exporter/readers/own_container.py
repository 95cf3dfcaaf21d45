"""Which Docker container the exporter itself runs in, if any.

Run as the README says (host PID and network namespaces), the exporter's own container shares
the host's namespaces by design; it is marked so that alert rules can leave it out. Two
independent signs, read from the exporter's own /proc/self (never the host's --path.procfs):
- the files Docker bind-mounts into every container, /etc/hostname, /etc/hosts and
  /etc/resolv.conf, come from <data-root>/containers/<id>/, which mountinfo shows as the
  mount's root; this holds under a private cgroup namespace too;
- the cgroup path names the container (`/docker/<id>` with cgroupfs, `docker-<id>.scope` with
  systemd) when the cgroup namespace is the host's.
"""

from __future__ import annotations

import re
from pathlib import Path

from exporter.readers.procfs import parse_mountinfo

_ID = r"([0-9a-f]{64})"
_MOUNTED_FILE = re.compile(rf"/containers/{_ID}/(?:hostname|hosts|resolv\.conf)$")
_CGROUP = re.compile(rf"(?:/docker/|/docker-){_ID}(?:\.scope)?(?:/|$)")


def container_id_from_mountinfo(mountinfo: str) -> str | None:
    for mount in parse_mountinfo(mountinfo):
        if match := _MOUNTED_FILE.search(mount.root):
            return match[1]
    return None


def container_id_from_cgroup(cgroup: str) -> str | None:
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        if match := _CGROUP.search(path):
            return match[1]
    return None


def own_container_id(self_dir: str | Path = "/proc/self") -> str | None:
    """The id of the Docker container this process runs in; None on the host (or elsewhere)."""
    base = Path(self_dir)
    for name, parse in (
        ("mountinfo", container_id_from_mountinfo),
        ("cgroup", container_id_from_cgroup),
    ):
        try:
            found = parse((base / name).read_text(errors="replace"))
        except OSError:
            continue
        if found:
            return found
    return None


def procfs_in_own_container(procfs: str | Path, self_dir: str | Path = "/proc/self") -> str | None:
    """The exporter's own container id when `procfs` shows that container's processes instead
    of the host's (started without --pid=host and without the host's /proc mounted): its PID 1
    is then in the container we are in. None when it is another's view, or we are in none."""
    own = own_container_id(self_dir)
    if own is None:
        return None
    return own if own_container_id(Path(procfs) / "1") == own else None
