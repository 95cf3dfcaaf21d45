"""The exporter's own effective capabilities, to name the one a refusal was for."""

from __future__ import annotations

from pathlib import Path

# linux/capability.h
BITS = {
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_PTRACE": 19,
}


def effective(status: Path = Path("/proc/self/status")) -> int:
    """CapEff of this process (our own /proc, whatever --path.procfs says); 0 if unreadable."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def lacking(*names: str, status: Path = Path("/proc/self/status")) -> tuple[str, ...]:
    """Those of the named capabilities this process does not have."""
    have = effective(status)
    return tuple(name for name in names if not have >> BITS[name] & 1)
