"""Naming the capability a refusal was for, from our own CapEff."""

from __future__ import annotations

from pathlib import Path

from exporter.readers.capabilities import lacking


def status_with(cap_eff: int, tmp_path: Path) -> Path:
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{cap_eff:016x}\n")
    return status


def test_only_the_missing_ones_are_named(tmp_path: Path) -> None:
    net_admin_only = status_with(1 << 12, tmp_path)
    assert lacking("CAP_NET_RAW", "CAP_NET_ADMIN", status=net_admin_only) == ("CAP_NET_RAW",)
    everything = status_with((1 << 41) - 1, tmp_path)
    assert lacking("CAP_NET_RAW", "CAP_SYS_PTRACE", status=everything) == ()
    nothing = status_with(0, tmp_path)
    assert lacking("CAP_DAC_READ_SEARCH", status=nothing) == ("CAP_DAC_READ_SEARCH",)
