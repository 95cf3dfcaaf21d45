"""The kernel's forwarding switches, from /proc/sys/net: IP forwarding and br_netfilter's
bridge-nf-call-* (whether bridged traffic passes iptables)."""

from __future__ import annotations

from pathlib import Path


def _sysctl(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_forwarding_switches(procfs: str | Path) -> tuple[int | None, ...]:
    """net.ipv4.ip_forward, net.ipv6.conf.all.forwarding, and net.bridge's
    bridge-nf-call-iptables and -ip6tables (None where unreadable; the bridge ones are absent
    until br_netfilter is loaded). /proc/sys/net is the reading process's network namespace."""
    sys_net = Path(procfs, "sys", "net")
    return (
        _sysctl(sys_net / "ipv4" / "ip_forward"),
        _sysctl(sys_net / "ipv6" / "conf" / "all" / "forwarding"),
        _sysctl(sys_net / "bridge" / "bridge-nf-call-iptables"),
        _sysctl(sys_net / "bridge" / "bridge-nf-call-ip6tables"),
    )
