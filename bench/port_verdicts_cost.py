"""The port verdicts' CPU at N published containers, on constructed facts (no host, no root):
each container publishes 80/tcp on 0.0.0.0 and :: (2N bindings, as Docker 20.10 publishes
`-p P:80`), with its DNAT, forward path, veth, listener and docker-proxy whole, userland-proxy
on, Docker 20.10's filter table (as tests/filter_text.py writes it). Times the judge every
render runs (ports.judge.port_verdicts) and the checks nat's and firewall's sources run on every
reading (nat.judge.unmet_or_hairpin, firewall.judge.port_path_suspects), median thread CPU of
--runs.

    python -m bench.port_verdicts_cost --containers 250
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from exporter.collectors.firewall.facts import FirewallFacts, ForwardingSwitches
from exporter.collectors.firewall.judge import port_path_suspects
from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.nat.judge import unmet_or_hairpin
from exporter.collectors.network.facts import NetworkFacts
from exporter.collectors.ports.facts import ContainerListeners, PortsFacts
from exporter.collectors.ports.judge import port_verdicts
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, PublishedPort
from exporter.readers.nat_rules import NatRule
from exporter.readers.netfilter_base import FirewallBackend
from exporter.readers.netlink import Link
from exporter.readers.network import ContainerNetns
from exporter.readers.proc_net import BoundSocket, ProxyProcess
from tests.filter_text import docker20_filter, parse_ruleset

ANY = ("0.0.0.0", "::")  # noqa: S104 (addresses published on, never bound here)
BRIDGE = DockerNetwork("n" * 64, "bridge", "bridge", "docker0", ("172.17.0.0/16",), False, True)


def _rule(action: str, **fields: object) -> NatRule:
    values: dict[str, object] = dict.fromkeys(
        ("source", "destination", "in_interface", "out_interface", "protocol", "dport"), None
    )
    values.update(to_address=None, to_port=None, in_negated=False, out_negated=False)
    values.update(fields)
    return NatRule("nftables", "nat", "DOCKER", action, **values)  # type: ignore[arg-type]


def facts(n: int) -> tuple[PortsFacts, NatFacts, FirewallFacts, NetworkFacts]:
    containers, rules, accepts, proxies, listeners, netns = [], [], [], [], [], []
    bridge = Link(3, "docker0", "bridge", None, None, None, "up", None, False, None)
    links = [bridge]
    rules.append(
        _rule("masquerade", source="172.17.0.0/16", out_interface="docker0", out_negated=True)
    )
    for i in range(n):
        address = f"172.17.{(i + 2) // 256}.{(i + 2) % 256}"
        cid = f"{i:064x}"
        bindings = tuple(PublishedPort("tcp", ip, 20000 + i, 80) for ip in ANY)
        containers.append(
            ContainerRecord(cid, f"c{i}", "busybox", "sha256:1", "running", "bridge", 0.0,
                            bindings, (address,))
        )  # fmt: skip
        rules.append(
            _rule("dnat", in_interface="docker0", in_negated=True, protocol="tcp",
                  dport=20000 + i, to_address=address, to_port=80)
        )  # fmt: skip
        accepts.append((f"{address}/32", "docker0", "tcp", 80))
        proxies += [ProxyProcess("tcp", p.host_ip, p.host_port, address, 80) for p in bindings]
        listeners.append(ContainerListeners(cid, 1000 + i, (BoundSocket("tcp", "::", 80),)))
        links.append(Link(100 + i, f"veth{i}", "veth", 3, 2, i, "up", "forwarding", None, None))
        netns.append(ContainerNetns(cid, 1000 + i, 4026532000 + i, i))
    backends = (
        FirewallBackend("nftables", True, None, len(rules), ("nat/DOCKER", "filter/DOCKER")),
        FirewallBackend("legacy", True, None, 0, ()),
    )
    expect = NatExpectations(networks=(BRIDGE,), containers=tuple(containers))
    nat = NatFacts(backends=backends, rules=tuple(rules), expectations=expect)
    # Docker 20.10's filter table, as the tests write it out (tests/filter_text.py).
    chains, filter_rules = parse_ruleset(docker20_filter(accepts=tuple(accepts)))
    fw = FirewallFacts(
        backends=backends,
        expectations=expect,
        filter_chains=chains,
        filter_rules=filter_rules,
        forwarding=ForwardingSwitches(1, 0, None, None),
    )
    ports = PortsFacts(tuple(containers), (BRIDGE,), tuple(listeners), tuple(proxies), True)
    net = NetworkFacts(tuple(links), tuple(netns), (), 0)
    return ports, nat, fw, net


def cpu_ms(run: Callable[[], object], runs: int) -> float:
    spent = []
    for _ in range(runs):
        start = time.thread_time()
        run()
        spent.append(time.thread_time() - start)
    return statistics.median(spent) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--containers", type=int, nargs="+", default=[250])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print(
        "containers  bindings  port_verdicts_ms  nat_unmet_or_hairpin_ms  fw_port_path_suspects_ms"
    )
    for n in args.containers:
        ports, nat, fw, net = facts(n)
        verdicts = port_verdicts(ports, nat, fw, net)
        assert all(v.verdict == "ok" for v in verdicts), [v for v in verdicts if v.verdict != "ok"]
        judge = cpu_ms(functools.partial(port_verdicts, ports, nat, fw, net), args.runs)
        suspects = cpu_ms(functools.partial(unmet_or_hairpin, nat), args.runs)
        forward = cpu_ms(functools.partial(port_path_suspects, fw), args.runs)
        print(f"{n:>10}  {len(verdicts):>8}  {judge:>16.2f}  {suspects:>23.2f}  {forward:>24.2f}")


if __name__ == "__main__":
    main()
