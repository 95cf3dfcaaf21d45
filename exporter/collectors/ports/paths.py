"""The paths a published port's connections really take, as data: for each kind of binding
(every address, one host address, loopback) and dockerd's userland-proxy setting, who can
connect and which hops their packets cross. The judge judges the hops on a path and calls the
others not judged ("off the path"). Read from moby's libnetwork (20.10: iptables.Forward and
setupIPTablesInternal; 28 and 29: the bridge driver's iptabler and nftabler) and proven by
real traffic in tests/integration/test_port_paths.py; docs/port-paths.md shows this table
(`python -m exporter.collectors.ports.paths` prints it).

What every engine does alike (20.10, 28 with iptables, 29 with iptables or nftables):
- PREROUTING and OUTPUT jump to DOCKER for local destinations, where the port's DNAT sends the
  packet on to the container; with userland-proxy on, OUTPUT skips 127.0.0.0/8 (and ::1), and
  DOCKER returns early for packets coming in from a bridge (`-i <bridge> -j RETURN`; the DNAT
  carries `! -i <bridge>`), so those reach docker-proxy on the host instead.
- A DNAT'ed packet from another machine is forwarded: FORWARD (DOCKER-USER, the port's
  ACCEPT) and IP forwarding. One from the host itself leaves through OUTPUT: no FORWARD.
- docker-proxy connects to the container from the host: OUTPUT, no FORWARD, no DNAT.
- The replies of an inbound connection are un-NATed by its conntrack entry: the network's
  MASQUERADE rule (`-s <subnet> ! -o <bridge>`) is never on an inbound path.
- With userland-proxy off ("hairpin" mode) a container reaching its own published port through
  the host's address is DNAT'ed back to itself and needs the per-port MASQUERADE (`-s C -d C -p
  tcp --dport P`), without which it sees its own address as the source and drops the packet.
  20.10 writes that rule in both modes; 28 and 29 only in hairpin mode.
- 28 and 29 also drop remote packets to a loopback binding in raw PREROUTING.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

ANY, ADDRESS, LOOPBACK, LOOPBACK6 = "any", "address", "loopback", "loopback6"
SCOPES = (ANY, ADDRESS, LOOPBACK, LOOPBACK6)

# The hops a path can cross, in the order a connection meets them (the judge's order too).
HOPS = (
    "dnat",
    "forward",
    "ip_forward",
    "veth",
    "bridge_port",
    "listener",
    "proxy",
    "hairpin_masquerade",
)

FORWARDED = ("dnat", "forward", "ip_forward", "veth", "bridge_port", "listener")
LOCAL_DNAT = ("dnat", "veth", "bridge_port", "listener")
PROXIED = ("proxy", "veth", "bridge_port", "listener")
# FORWARD's accept for a bridge's own traffic (`-i br -o br`, inter-container communication)
# is not the port's ACCEPT (`! -i br -o br`) that the forward hop judges: not a hop here.
HAIRPIN = ("dnat", "ip_forward", "veth", "bridge_port", "listener", "hairpin_masquerade")


@dataclass(frozen=True)
class Route:
    """Who connects (client), how the packets go (via), and the hops they cross."""

    client: str
    via: str
    hops: tuple[str, ...]


_REMOTE = Route("another machine", "PREROUTING DNAT, then FORWARD", FORWARDED)
_HOST_ADDRESS = Route("the host, to its own address", "OUTPUT DNAT", LOCAL_DNAT)

PATHS: dict[tuple[str, bool], tuple[Route, ...]] = {
    (ANY, True): (
        _REMOTE,
        _HOST_ADDRESS,
        Route("the host, to 127.0.0.1 or ::1", "OUTPUT skips loopback: docker-proxy", PROXIED),
        Route(
            "a container, to the host's address",
            "DOCKER returns for a bridge's packets: docker-proxy",
            PROXIED,
        ),
    ),
    (ADDRESS, True): (
        _REMOTE,
        _HOST_ADDRESS,
        Route(
            "a container, to that address",
            "DOCKER returns for a bridge's packets: docker-proxy",
            PROXIED,
        ),
    ),
    (LOOPBACK, True): (
        Route("the host, to that loopback address", "OUTPUT skips loopback: docker-proxy", PROXIED),
    ),
    (ANY, False): (
        _REMOTE,
        _HOST_ADDRESS,
        Route(
            "the host, to 127.0.0.1",
            "OUTPUT DNAT (route_localnet, MASQUERADE of local sources: not judged)",
            LOCAL_DNAT,
        ),
        Route(
            "a container, to the host's address (its own port too)",
            "PREROUTING DNAT, forwarded within the bridge, the per-port MASQUERADE",
            HAIRPIN,
        ),
    ),
    (ADDRESS, False): (
        _REMOTE,
        _HOST_ADDRESS,
        Route(
            "a container, to that address (its own port too)",
            "PREROUTING DNAT, forwarded within the bridge, the per-port MASQUERADE",
            HAIRPIN,
        ),
    ),
    (LOOPBACK, False): (
        Route(
            "the host, to that loopback address",
            "OUTPUT DNAT (route_localnet, MASQUERADE of local sources: not judged)",
            LOCAL_DNAT,
        ),
    ),
    (LOOPBACK6, True): (Route("the host, to ::1", "OUTPUT skips loopback: docker-proxy", PROXIED),),
    (LOOPBACK6, False): (
        Route("the host, to ::1", "OUTPUT DNAT, with no route_localnet for IPv6", LOCAL_DNAT),
    ),
}

# Paths no test proves work: their verdict is never ok (unknown at their first hop instead).
UNPROVEN = {
    (LOOPBACK6, False): (
        "::1 with userland-proxy off: Docker sets route_localnet for IPv4 only, and the kernel "
        "routes no ::1 source off loopback; not proven to work"
    ),
}

# A binding Docker writes no DNAT for (an IPv6 binding without IPv6 NAT, `--iptables=false`):
# docker-proxy serves every client, when it runs.
PROXY_ONLY = (Route("anyone", "docker-proxy on the host", PROXIED),)

# Why a hop is on no path of a binding, by hop.
_OFF = {
    "dnat": "off the path: docker-proxy serves this binding (nat OUTPUT skips loopback)",
    "forward": "off the path: nothing from another machine is forwarded to this binding",
    "ip_forward": "off the path: nothing from another machine is forwarded to this binding",
    "proxy": "off the path: userland-proxy is off",
    "hairpin_masquerade": (
        "off the path: with userland-proxy on, containers reach published ports through "
        "docker-proxy"
    ),
}


@functools.lru_cache(maxsize=256)
def scope(address: str) -> str:
    """The kind of binding an address (as judge.host_address gives it) is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ADDRESS
    if ip.is_unspecified:
        return ANY
    if ip.is_loopback:
        return LOOPBACK6 if ip.version == 6 else LOOPBACK
    return ADDRESS


@functools.lru_cache(maxsize=16)
def on_path(binding: str, proxy_on: bool) -> frozenset[str]:
    """The hops some client of the binding crosses."""
    return frozenset(h for r in PATHS[(binding, proxy_on)] for h in r.hops)


def off_path_reason(hop: str) -> str:
    return _OFF.get(hop, "off the path")


def table() -> str:
    """PATHS as the Markdown table docs/port-paths.md holds."""
    rows = [
        "| binding | userland-proxy | client | how | hops |",
        "|---|---|---|---|---|",
    ]
    shown = {
        ANY: "0.0.0.0 / ::",
        ADDRESS: "one host address",
        LOOPBACK: "127.0.0.1",
        LOOPBACK6: "::1",
    }
    for (binding, proxy_on), routes in PATHS.items():
        unproven = " (unproven: never ok)" if (binding, proxy_on) in UNPROVEN else ""
        for r in routes:
            rows.append(
                f"| {shown[binding]} | {'on' if proxy_on else 'off'} | {r.client} | {r.via} "
                f"| {', '.join(r.hops)}{unproven} |"
            )
    for r in PROXY_ONLY:
        rows.append(
            f"| no DNAT written (IPv6 without IPv6 NAT, `--iptables=false`) | on | {r.client} "
            f"| {r.via} | {', '.join(r.hops)} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
