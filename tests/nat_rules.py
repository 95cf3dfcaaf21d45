"""NatRule records as the nat readers decode Docker's rules: the one builder the unit tests
share (a MASQUERADE per bridge subnet, a DNAT per published port)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from exporter.readers.nat_rules import NatRule

_MASQUERADE = NatRule(
    backend="nftables",
    table="nat",
    chain="POSTROUTING",
    action="masquerade",
    source="172.17.0.0/16",
    destination=None,
    in_interface=None,
    in_negated=False,
    out_interface="docker0",
    out_negated=True,
    protocol=None,
    dport=None,
    to_address=None,
    to_port=None,
)


def masquerade(
    subnet: str = "172.17.0.0/16", bridge: str | None = "docker0", **changes: Any
) -> NatRule:
    """`-A POSTROUTING -s <subnet> ! -o <bridge> -j MASQUERADE`, from iptables-nft."""
    return replace(_MASQUERADE, source=subnet, out_interface=bridge, **changes)


def dnat(
    host_port: int,
    protocol: str = "tcp",
    to_address: str = "172.17.0.2",
    to_port: int = 80,
    bridge: str = "docker0",
    **changes: Any,
) -> NatRule:
    """`-A DOCKER ! -i <bridge> -p <protocol> --dport <host_port> -j DNAT --to-destination
    <to_address>:<to_port>`, from iptables-nft."""
    return replace(
        _MASQUERADE,
        chain="DOCKER",
        action="dnat",
        source=None,
        in_interface=bridge,
        in_negated=True,
        out_interface=None,
        out_negated=False,
        protocol=protocol,
        dport=host_port,
        to_address=to_address,
        to_port=to_port,
        **changes,
    )
