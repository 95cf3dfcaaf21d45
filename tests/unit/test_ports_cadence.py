"""When the ports source reads a container's listeners again (cadence.py): the triggered and
the never read at once, every container within its refresh, spread over the runs, and which
containers a firewall change names."""

from __future__ import annotations

import os
import socket
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from exporter.collectors.ports.cadence import (
    due,
    proxied_containers,
    refresh_runs,
    rule_keys,
    touched,
)
from exporter.readers.docker_api import ContainerRecord, PublishedPort
from exporter.readers.filter_rules import FilterTables
from exporter.readers.netfilter import NetfilterReading
from exporter.readers.proc_net import ProxyProcess, bound_socket_inodes, held_sockets
from tests.filter_text import docker20_filter, parse_ruleset
from tests.nat_rules import dnat, masquerade


def run_schedule(names: list[str], runs: int, count: int) -> list[frozenset[str]]:
    """The reads of `count` runs with nothing triggered, each reading's run kept."""
    last: dict[str, int | None] = dict.fromkeys(names)
    reads = []
    for run in range(count):
        chosen = due(last, run, runs, ())
        last.update(dict.fromkeys(chosen, run))
        reads.append(chosen)
    return reads


def test_refresh_in_runs_of_the_interval() -> None:
    assert refresh_runs(240, 15) == 16  # the default: 4 minutes at 15 s
    assert refresh_runs(250, 15) == 16  # never later than the refresh
    assert refresh_runs(240, 2) == 120
    assert refresh_runs(1, 15) == 1  # shorter than the interval: every run
    assert refresh_runs(0.3, 0.1) == 3  # no float rounding down a whole count


def test_the_first_run_reads_every_container_then_a_share_each_run() -> None:
    names = [f"c{i:03}" for i in range(250)]
    reads = run_schedule(names, 16, 1 + 3 * 16)
    assert reads[0] == frozenset(names)
    # 250 over 16 runs: 15 or 16 a run, never all at once.
    assert {len(r) for r in reads[1:]} == {15, 16}


def test_two_containers_over_sixteen_runs_are_read_one_every_eight_runs() -> None:
    reads = run_schedule(["a", "b"], 16, 1 + 32)
    assert [run for run, r in enumerate(reads) if r] == [0, 8, 16, 24, 32]
    assert all(len(r) == 1 for r in reads[1:] if r)


@given(
    n=st.integers(min_value=1, max_value=60),
    runs=st.integers(min_value=1, max_value=40),
)
def test_every_container_is_read_within_its_refresh(n: int, runs: int) -> None:
    names = [f"c{i}" for i in range(n)]
    reads = run_schedule(names, runs, 1 + 3 * runs)
    for name in names:
        at = [run for run, r in enumerate(reads) if name in r]
        assert at[0] == 0
        assert all(b - a <= runs for a, b in zip(at, [*at[1:], len(reads) - 1], strict=True))


def test_containers_coming_and_going_still_come_round_within_the_refresh() -> None:
    # Ten new containers at run 4: all read at once (never read); of the old ones only the
    # one read 4 runs ago (overdue), though this run's share alone would be 3 of 12.
    new = {f"n{i}": None for i in range(10)}
    assert due({"a": 0, "b": 3, **new}, 4, 4, ()) == {"a", *new}


def test_triggered_and_never_read_containers_are_read_at_once() -> None:
    last: dict[str, int | None] = {"old": 5, "changed": 5, "new": None}
    assert due(last, 6, 100, {"changed"}) == {"changed", "new"}
    assert due(last, 6, 100, ()) == {"new"}


def reading(nat: tuple[object, ...] = (), filter_text: str = "") -> NetfilterReading:
    _, rules = parse_ruleset(filter_text) if filter_text else ((), ())
    return NetfilterReading((), tuple(nat), FilterTables((), rules))  # type: ignore[arg-type]


WEB = ContainerRecord(
    id="web",
    name="web",
    image="busybox",
    image_id="sha256:1",
    state="running",
    network_mode="default",
    created=0.0,
    ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80),),
    addresses=("172.17.0.2",),
)
DB = replace(
    WEB,
    id="db",
    name="db",
    ports=(PublishedPort("tcp", "0.0.0.0", 5432, 5432),),
    addresses=("172.17.0.3",),
)


def test_a_rule_change_names_the_containers_it_points_at() -> None:
    both = (
        ("172.17.0.2/32", "docker0", "tcp", 80),
        ("172.17.0.3/32", "docker0", "tcp", 5432),
    )
    before = rule_keys(
        reading(
            (masquerade(), dnat(8080), dnat(5432, to_address="172.17.0.3", to_port=5432)),
            docker20_filter(accepts=both),
        )
    )
    # Positions are not part of a rule (counters are kept apart from rules altogether): the
    # same rules, moved down by a rule before them, change nothing.
    counted = rule_keys(
        reading(
            (
                masquerade(),
                dnat(8080),
                dnat(5432, to_address="172.17.0.3", to_port=5432),
            ),
            docker20_filter(accepts=both, user=("-A DOCKER-USER -i eth9 -j RETURN",)),
        )
    )
    assert touched((WEB, DB), before, counted) == frozenset()
    # web's DNAT gone: web only. db's forward accept gone: db only.
    no_dnat = rule_keys(
        reading(
            (masquerade(), dnat(5432, to_address="172.17.0.3", to_port=5432)),
            docker20_filter(accepts=both),
        )
    )
    assert touched((WEB, DB), before, no_dnat) == {"web"}
    no_accept = rule_keys(
        reading(
            (masquerade(), dnat(8080), dnat(5432, to_address="172.17.0.3", to_port=5432)),
            docker20_filter(accepts=both[:1]),
        )
    )
    assert touched((WEB, DB), before, no_accept) == {"db"}
    # A DNAT of web's host port to somewhere else names web too.
    elsewhere = rule_keys(reading((dnat(8080, to_address="10.0.0.9"),)))
    assert "web" in touched((WEB, DB), rule_keys(reading()), elsewhere)


def test_proxies_name_the_containers_they_forward_to() -> None:
    mine = ProxyProcess("tcp", "0.0.0.0", 8080, "172.17.0.2", 80)
    other = ProxyProcess("tcp", "0.0.0.0", 5432, "172.17.0.3", 5432)
    assert proxied_containers((WEB, DB), (mine,)) == {"web"}
    assert proxied_containers((WEB, DB), (mine, other)) == {"web", "db"}
    assert proxied_containers((WEB, DB), ()) == frozenset()


def test_a_listener_is_told_still_open_from_its_holders_descriptors() -> None:
    """The inode /proc/PID/net gives a listener is found among its process's /proc/PID/fd
    links while the socket is open, and no longer once it is closed (this process's own)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        found = bound_socket_inodes("/proc", os.getpid(), "tcp", [port])
        inodes = {inode for s, inode in found if s.port == port}
        assert len(inodes) == 1 and 0 not in inodes
        assert held_sockets("/proc", [os.getpid()], inodes) == inodes
    assert held_sockets("/proc", [os.getpid()], inodes) == frozenset()
    assert held_sockets("/proc", [2**22 + 1], inodes) == frozenset()  # no such process
