"""Snapshot -> exposition on a host recorded with `inspect --format json` (no root, no engine)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter import metrics
from exporter.changes import ChangeCounters
from exporter.collectors import CollectorDef, all_collectors, facts_types
from exporter.collectors.network.facts import LinkCounters, NetworkCounters, NetworkFacts
from exporter.collectors.processes.facts import ProcessFacts
from exporter.memo import last_answer
from exporter.metrics import Families, MetricSpec, Renderer, Writer, render
from exporter.readers.docker_api import EngineFacts
from exporter.recording import snapshot_from_json, snapshot_json
from exporter.report import render_report
from exporter.selfmetrics import write_self_metrics
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from tests.conftest import FIXTURES
from tests.helpers import parse, select, value

RECORDED = FIXTURES / "host-snapshot.json"
GOLDEN = FIXTURES / "host-snapshot.prom"
WRITERS = (*(c.write_all(Settings()) for c in all_collectors()), write_self_metrics)


def recorded() -> Snapshot:
    return snapshot_from_json(RECORDED.read_text(), facts_types())


def test_recording_round_trips() -> None:
    snapshot = recorded()
    assert snapshot_from_json(snapshot_json(snapshot), facts_types()) == snapshot


def test_exposition_matches_golden(request: pytest.FixtureRequest) -> None:
    text = render(recorded(), WRITERS).decode()
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run pytest --update-golden and review the diff"


def test_recorded_host_facts_join_as_expected() -> None:
    samples = parse(render(recorded(), WRITERS))

    def shared(container: str) -> set[str]:
        return {
            s.labels["namespace"]
            for s in select(
                samples, "docker_host_container_namespace_shared_with_host", container=container
            )
            if s.value == 1
        }

    assert shared("web") == {"cgroup", "user"}
    assert shared("pidhost") == {"cgroup", "pid", "user"}
    assert shared("nethost") == {"cgroup", "net", "user"}
    owner_net = select(
        samples, "docker_host_container_namespace_info", container="owner", namespace="net"
    )[0].labels["inode"]
    assert select(
        samples,
        "docker_host_container_namespace_info",
        container="sidecar",
        namespace="net",
        inode=owner_net,
    )
    assert value(samples, "docker_host_container_zombie_processes", container="zombie") == 1
    assert value(samples, "docker_host_container_processes", container="web") == 2  # + exec
    assert value(samples, "docker_host_shim_orphaned", container_id="5f1e0c0ffee5") == 1
    assert sum(s.value for s in select(samples, "docker_host_shim_orphaned")) == 1
    assert value(samples, "docker_host_container_info", container="stopped", state="exited") == 1
    assert not select(samples, "docker_host_container_pid1_info", container="stopped")
    assert value(samples, "docker_host_containers", state="running") == 13


def test_recorded_network_pairs_bridges_and_orphans() -> None:
    samples = parse(render(recorded(), WRITERS))
    pairs = {
        (
            s.labels["container"],
            s.labels["container_interface"],
            s.labels["bridge"],
            s.labels["network"],
        )
        for s in select(samples, "docker_host_veth_info")
    }
    assert pairs == {
        ("n-default", "eth0", "docker0", "bridge"),
        ("n-two", "eth0", "docker0", "bridge"),
        ("n-two", "eth1", "br-46123485796f", "dhe-user"),
        ("n-user", "eth0", "br-46123485796f", "dhe-user"),
        ("owner", "eth0", "docker0", "bridge"),
        ("pidhost", "eth0", "docker0", "bridge"),
        ("web", "eth0", "docker0", "bridge"),
        ("zombie", "eth0", "docker0", "bridge"),
    }
    orphans = {
        (s.labels["interface"], s.labels["reason"], s.labels["bridge"])
        for s in select(samples, "docker_host_veth_orphaned")
    }
    assert orphans == {
        ("vorph0", "no_container", "docker0"),  # ip netns add + veth on docker0
        ("vhost0", "no_container", "docker0"),  # both ends on the host, on a Docker bridge
    }
    # Off Docker's bridges, into a namespace only a process that is no container holds (as
    # LXC's, nspawn's or rootless Podman's are): another runtime's, reported and not judged.
    assert (
        value(
            samples,
            "docker_host_veth_peer_namespace_info",
            interface="vgone0",
            bridge="",
            owner_kind="foreign",
            owner="process:sleep",
        )
        == 1
    )
    assert value(samples, "docker_host_veths", status="foreign") == 1
    # Host veth pairs off Docker bridges (vx0 on dhe-br0) are not Docker's to judge.
    assert value(samples, "docker_host_veths", status="other") == 3  # vx0, vx1, vhost1
    assert value(samples, "docker_host_bridge_info", bridge="dhe-br0", network="") == 1
    assert value(samples, "docker_host_bridge_ports", bridge="docker0") == 8
    assert select(
        samples, "docker_host_container_network_shared_with", container="sidecar", owner="owner"
    )
    assert select(
        samples,
        "docker_host_container_network_shared_with",
        container="n-sharer",
        owner="n-default",
    )
    assert not select(samples, "docker_host_veth_info", container="nethost")
    assert not select(samples, "docker_host_veth_info", container="isolated")


def with_engine(snapshot: Snapshot, success: bool) -> Snapshot:
    state = snapshot.collectors["containers"]
    return snapshot.with_state(dataclasses.replace(state, success=success))


def test_a_failed_collector_exports_only_its_health() -> None:
    snapshot = with_engine(recorded(), success=False)
    samples = parse(render(snapshot, WRITERS))
    assert value(samples, "docker_host_collector_success", collector="containers") == 0
    assert not select(samples, "docker_host_container_info")
    assert select(
        samples, "docker_host_collector_last_success_timestamp_seconds", collector="containers"
    )
    # /proc facts keep coming, still named from the last good container list.
    assert value(samples, "docker_host_container_processes", container="web") == 2


def test_never_answered_engine_names_by_short_id_and_judges_no_shim() -> None:
    state = recorded().collectors["processes"]
    procs = state.facts
    assert isinstance(procs, ProcessFacts)
    # What the source reads with no container list ever (tests/unit/test_procfs_reader.py).
    unjudged = dataclasses.replace(
        procs, shims=tuple(dataclasses.replace(s, listed=None) for s in procs.shims)
    )
    snapshot = Snapshot({"processes": dataclasses.replace(state, facts=unjudged)})
    samples = parse(render(snapshot, WRITERS))
    assert not select(samples, "docker_host_shim_orphaned")
    assert not select(samples, "docker_host_collector_success", collector="containers")
    names = {s.labels["container"] for s in select(samples, "docker_host_container_processes")}
    assert all(len(n) == 12 for n in names)


def test_report_shows_the_recorded_host() -> None:
    text = render_report(recorded(), [c.report for c in all_collectors()])
    for needle in (
        "CONTAINER PROCESSES",
        "pidhost",
        "cgroup,pid,user",
        "YES",
        "NAMESPACES",
        "DAEMONS",
        "20.10.24",
    ):
        assert needle in text


def test_recording_is_checked_in() -> None:
    assert Path(RECORDED).stat().st_size > 1000


def with_network(snapshot: Snapshot, **changes: object) -> Snapshot:
    state = snapshot.collectors["network"]
    facts = dataclasses.replace(state.facts, **changes)  # type: ignore[type-var]
    return snapshot.with_state(dataclasses.replace(state, facts=facts))


def test_an_orphan_must_show_in_two_readings() -> None:
    # Only one reading saw them: a pair being built or torn down by libnetwork.
    samples = parse(render(with_network(recorded(), earlier_suspects=()), WRITERS))
    assert not select(samples, "docker_host_veth_orphaned")
    assert value(samples, "docker_host_veths", status="orphaned") == 0


def test_an_orphan_whose_ifindex_was_reused_is_not_confirmed() -> None:
    snapshot = recorded()
    net = snapshot.current("network", NetworkFacts)
    assert net is not None
    suspects = net.earlier_suspects
    renamed = tuple((index, name + "-old") for index, name in suspects)
    samples = parse(render(with_network(snapshot, earlier_suspects=renamed), WRITERS))
    assert not select(samples, "docker_host_veth_orphaned")


def test_without_netns_access_nothing_is_called_orphaned_for_lack_of_a_container() -> None:
    samples = parse(render(with_network(recorded(), unreadable_netns=3), WRITERS))
    reasons = {s.labels["reason"] for s in select(samples, "docker_host_veth_orphaned")}
    # vhost0 has both ends on the host: that verdict needs no container namespace.
    assert reasons <= {"no_container"}
    assert {s.labels["interface"] for s in select(samples, "docker_host_veth_orphaned")} == {
        "vhost0"
    }
    assert value(samples, "docker_host_network_namespaces_unreadable") == 3


def test_a_renderer_rewrites_only_what_changed_and_matches_a_fresh_render() -> None:
    runs: list[str] = []

    def counted(name: str, inner: Writer) -> Writer:
        def write(snapshot: Snapshot, out: Families) -> None:
            runs.append(name)
            inner.write(snapshot, out)

        return Writer(write)

    def named(definition: CollectorDef) -> Iterator[Writer]:
        # A collector's counter writer (its second) is told apart as "<name>:counters".
        for i, writer in enumerate(definition.writers(Settings())):
            yield counted(definition.name + (":counters" if i else ""), writer)

    renderer = Renderer(
        [*(w for c in all_collectors() for w in named(c)), Writer(write_self_metrics, cached=False)]
    )
    first = recorded()
    assert renderer.render(first) == render(first, WRITERS)
    counting = [f"{c.name}:counters" for c in all_collectors() if c.counter_writer is not None]
    assert "network:counters" in counting
    assert sorted(runs) == sorted([*(c.name for c in all_collectors()), *counting])

    # A network run: only the network's families are written again.
    runs.clear()
    second = with_network(first, unreadable_netns=3)
    assert renderer.render(second) == render(second, WRITERS)
    assert runs == ["network", "network:counters"]

    # A network run in which only the veths' counters moved (the same facts object): only
    # the writer of the traffic families runs, and its numbers are the new ones.
    runs.clear()
    net = second.collectors["network"]
    facts = net.facts
    assert isinstance(facts, NetworkFacts)
    moved = NetworkCounters(
        tuple((link.index, LinkCounters(*(7,) * 8)) for link in facts.links if link.kind == "veth")
    )
    counted_only = second.with_state(dataclasses.replace(net, counters=moved))
    assert renderer.render(counted_only) == render(counted_only, WRITERS)
    assert runs == ["network:counters"]
    traffic = select(parse(renderer.render(counted_only)), "docker_host_veth_receive_bytes_total")
    assert traffic and {s.value for s in traffic} == {7}
    second = counted_only

    # A container list run that found what the last one did: nothing is written again.
    runs.clear()
    containers = second.collectors["containers"]
    third = second.with_state(dataclasses.replace(containers, duration_seconds=0.5))
    assert renderer.render(third) == render(third, WRITERS)
    assert runs == []

    # One that found other containers: its writer and the writers joining with it.
    engine = containers.facts
    assert isinstance(engine, EngineFacts)
    fewer = dataclasses.replace(engine, containers=engine.containers[1:])
    fourth = third.with_state(dataclasses.replace(containers, facts=fewer))
    assert renderer.render(fourth) == render(fourth, WRITERS)
    assert sorted(runs) == ["containers", "network", "network:counters", "processes"]

    # A processes run that could not judge a shim this time (no list current as of after it
    # started): only the processes writer reads those facts.
    runs.clear()
    procs = fourth.current("processes", ProcessFacts)
    assert procs is not None
    undecided = dataclasses.replace(
        procs, shims=tuple(dataclasses.replace(s, listed=None) for s in procs.shims)
    )
    state = fourth.collectors["processes"]
    fifth = fourth.with_state(dataclasses.replace(state, facts=undecided))
    assert renderer.render(fifth) == render(fifth, WRITERS)
    assert runs == ["processes"]

    # A failed containers run: its series go, and the writers that name containers keep the
    # names of its last good list, so theirs are not written again.
    runs.clear()
    failed = fifth.collectors["containers"]
    sixth = fifth.with_state(dataclasses.replace(failed, success=False, error="down"))
    assert renderer.render(sixth) == render(sixth, WRITERS)
    assert "containers" in runs


def test_a_renderer_keeps_its_writers_text_once_as_views_of_the_last_exposition() -> None:
    """The kept text of a writer whose inputs did not change is its slice of the last
    exposition, not bytes of its own (1.5 MB at 250 published ports); a render re-points
    every writer's to the new exposition, so the last one is let go."""
    cached = [w for c in all_collectors() for w in c.writers(Settings())]
    renderer = Renderer([*cached, Writer(write_self_metrics, cached=False)])
    first = recorded()
    one = renderer.render(first)
    second = with_network(first, unreadable_netns=3)
    two = renderer.render(second)
    assert two == render(second, WRITERS) and two != one
    kept = [written.text for _, _, written in renderer._cache.values()]
    assert len(kept) == len(cached)
    assert all(isinstance(text, memoryview) and text.obj is two for text in kept)
    assert two.startswith(b"".join(kept))  # the uncached writer's text after them


def test_counters_that_moved_rerun_only_the_writers_that_read_counters() -> None:
    """A collector's counters (Sampled) are kept apart from its facts: traffic that moves them
    must not re-run the writers judged on the facts."""
    runs: list[str] = []
    # Not declare(): the catalogue is the exporter's, checked against the docs.
    spec = MetricSpec("test_counted_rule", "counter", "A rule's packets.", ("rule",), "t")
    verdict = MetricSpec("test_rule_ok", "gauge", "1 when the rule is right.", ("rule",), "t")

    def write_verdicts(snapshot: Snapshot, out: Families) -> None:
        runs.append("verdicts")
        for rule in snapshot.current("t", tuple) or ():
            out.add(verdict, 1, rule)

    def write_counters(snapshot: Snapshot, out: Families) -> None:
        runs.append("counters")
        for rule, packets in sorted((snapshot.counters("t", dict) or {}).items()):
            out.add(spec, packets, rule)

    renderer = Renderer([Writer(write_verdicts), Writer(write_counters)])
    facts = ("a", "b")

    def state(counters: dict[str, int], rules: tuple[str, ...] = facts) -> Snapshot:
        return Snapshot().with_state(
            CollectorState("t", True, 0.1, 1.0, facts=rules, counters=counters)
        )

    renderer.render(state({"a": 1, "b": 2}))
    assert runs == ["verdicts", "counters"]
    moved = renderer.render(state({"a": 5, "b": 2}))
    assert runs == ["verdicts", "counters", "counters"]
    assert b'test_counted_rule_total{rule="a"} 5.0' in moved
    renderer.render(state({"a": 5, "b": 2}, ("a",)))
    assert runs == ["verdicts", "counters", "counters", "verdicts"]
    fresh = render(state({"a": 5, "b": 2}, ("a",)), [write_verdicts, write_counters])
    assert renderer.render(state({"a": 5, "b": 2}, ("a",))) == fresh


class _Compared(tuple[str, ...]):
    """Facts that count how often they are compared by value."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _Compared.compared += 1
        return tuple.__eq__(self, other)

    __hash__ = tuple.__hash__


def test_facts_read_again_equal_are_compared_by_value_once_not_on_every_render() -> None:
    """A collector that reads its facts again gives an equal object, not the same one: the
    writer is not re-run, and its cached inputs become the new object, so the renders after
    compare by identity (a deep comparison of the layers' facts cost 0.2 ms a render)."""
    runs: list[str] = []
    spec = MetricSpec("test_layer_size", "gauge", "A layer's size.", ("layer",), "t")

    def write_layers(snapshot: Snapshot, out: Families) -> None:
        runs.append("layers")
        for layer in snapshot.current("t", tuple) or ():
            out.add(spec, 1, layer)

    def state(facts: tuple[str, ...]) -> Snapshot:
        return Snapshot().with_state(CollectorState("t", True, 0.1, 1.0, facts=facts))

    renderer = Renderer([Writer(write_layers)])
    first = renderer.render(state(_Compared(("a", "b"))))
    again = _Compared(("a", "b"))
    _Compared.compared = 0
    assert renderer.render(state(again)) == first
    assert _Compared.compared == 1
    for _ in range(3):
        assert renderer.render(state(again)) == first
    assert (_Compared.compared, runs) == (1, ["layers"])


def test_the_network_writers_reformat_only_the_veths_that_changed_and_match_a_fresh_render() -> (
    None
):
    """Families.blocks_of in the network writers: after one veth's counters moved, one veth was
    renamed and one removed, the re-render equals a render from scratch; each writer ran."""
    network = next(c for c in all_collectors() if c.name == "network")
    writers = list(network.writers(Settings()))
    plain = [w.write for w in writers]
    renderer = Renderer(writers)
    first = recorded()
    net = first.collectors["network"]
    facts = net.facts
    assert isinstance(facts, NetworkFacts)
    veths = [link for link in facts.links if link.kind == "veth"]
    assert len(veths) >= 3
    counted = NetworkCounters(tuple((x.index, LinkCounters(*(5,) * 8)) for x in veths))
    start = first.with_state(dataclasses.replace(net, counters=counted))
    assert renderer.render(start) == render(start, plain)
    moved = NetworkCounters(((veths[0].index, LinkCounters(*(9,) * 8)), *counted.links[1:]))
    links = tuple(
        dataclasses.replace(x, name="vethrenamed") if x.index == veths[1].index else x
        for x in facts.links
        if x.index != veths[2].index
    )
    changed = start.with_state(
        dataclasses.replace(net, facts=dataclasses.replace(facts, links=links), counters=moved)
    )
    text = renderer.render(changed)
    assert text == render(changed, plain)
    assert b'interface="vethrenamed"' in text and veths[2].name.encode() not in text
    traffic = select(parse(text), "docker_host_veth_receive_bytes_total")
    by_name = {s.labels["interface"]: s.value for s in traffic}
    assert by_name[veths[0].name] == 9 and by_name["vethrenamed"] == 5


def test_full_rereads_and_lost_events_are_counted_by_collector_and_reason() -> None:
    changes = ChangeCounters()
    changes.reread("network", "start")
    changes.lost("network")
    changes.reread("network", "lost_events")
    changes.reread("network", "lost_events")
    text = render(Snapshot(), [changes.write]).decode()
    assert 'docker_host_full_rereads_total{collector="network",reason="lost_events"} 2.0' in text
    assert 'docker_host_full_rereads_total{collector="network",reason="start"} 1.0' in text
    assert 'docker_host_change_events_lost_total{collector="network"} 1.0' in text
    # Counted from 0 once the collector started, so the first increase is seen.
    assert 'docker_host_full_rereads_total{collector="network",reason="resync"} 0.0' in text
    assert changes.rereads("network", "lost_events") == 2 and changes.lost_count("network") == 1


def test_a_recording_replays_the_veths_counters_typed() -> None:
    """The network's counters (Sampled) are recorded beside its facts and replay as
    NetworkCounters: the traffic families render from a recording as from the host."""
    snapshot = recorded()
    net = snapshot.collectors["network"]
    assert isinstance(net.facts, NetworkFacts)
    counters = NetworkCounters(
        tuple(
            (link.index, LinkCounters(*range(link.index, link.index + 8)))
            for link in net.facts.links
            if link.kind == "veth"
        )
    )
    counted = snapshot.with_state(dataclasses.replace(net, counters=counters))
    again = snapshot_from_json(snapshot_json(counted), facts_types())
    assert again == counted
    assert again.counters("network", NetworkCounters) == counters
    assert render(again, WRITERS) == render(counted, WRITERS) != render(snapshot, WRITERS)


BLOCK_A = MetricSpec("dhe_block_a", "gauge", "A.", ("item",), "test")
BLOCK_B = MetricSpec("dhe_block_b", "counter", "B.", ("item", "kind"), "test")


def test_blocks_are_formatted_once_and_written_as_if_added_one_by_one() -> None:
    formatted: list[tuple[str, int]] = []

    def series(item: tuple[str, int], out: Families) -> None:
        formatted.append(item)
        name, n = item
        out.add(BLOCK_A, n, name)
        for i in range(n):  # a family the first block lacks comes after it, as when added
            out.add(BLOCK_B, i, name, str(i))

    def plain(items: list[tuple[str, int]], cap: int | None) -> Families:
        out = Families(cap)
        for item in items:
            series(item, out)
        return out

    def text(out: Families) -> tuple[list[str], dict[str, int]]:
        return [line for _, lines in out.lines.values() for line in lines], out.dropped

    items = [("x", 0), ("y", 2), ("z", 3)]
    for cap in (None, 4):
        kept = None
        for run in (items, [("x", 0), ("y", 1), ("z", 3)]):
            expected = text(plain(run, cap))
            formatted.clear()
            out = Families(cap, kept)
            for item in run:
                out.blocks_of((item,), series)
            assert text(out) == expected
            kept = out.kept
        # The second write formatted only the changed item's block.
        assert formatted == [("y", 1)]
    assert text(plain(items, 4))[1] == {"dhe_block_b": 1}  # the cap still counts what it drops


BLOCK_C = MetricSpec("dhe_block_c", "gauge", "C.", ("item",), "test")


def _item_series(item: tuple[str, int], out: Families) -> None:
    name, n = item
    if n % 2:
        out.add(BLOCK_C, n, name)  # a family only some blocks have, first met mid-sequence
    out.add(BLOCK_A, n, name)
    for i in range(n % 3):
        out.add(BLOCK_B, i, name, str(i))


def _plain(items: list[tuple[str, int]], cap: int | None) -> Families:
    out = Families(cap)
    out.add(BLOCK_A, -1, "before")  # a family that already has lines when the blocks come
    for item in items:
        _item_series(item, out)
    return out


def _text(out: Families) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
    return [(name, lines) for name, (_, lines) in out.lines.items()], out.dropped


@pytest.mark.parametrize("cap", [None, 3, 7, 1000])
def test_blocks_of_writes_what_adding_one_by_one_writes_and_formats_only_new_keys(
    cap: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many writes in a row, each a changed sequence (some added, some gone, a repeat): the
    lines, their families' order and the cap's drops are those of plain adds, every time."""
    formatted: list[tuple[str, int]] = []
    original = metrics._formatted

    def counting(key: Any, write: Any) -> Any:
        formatted.append(key)
        return original(key, write)

    monkeypatch.setattr(metrics, "_formatted", counting)
    kept = None
    writes = [
        [("x", 0), ("y", 1), ("z", 5)],
        [("a", 3), ("x", 0), ("y", 1), ("y", 1), ("z", 5)],  # one new, one repeated
        [("a", 3), ("x", 0), ("z", 4)],  # one gone, one changed
        [(f"c{i}", i) for i in range(100)],  # every one new: the stale ones go in one go
        [(f"c{i}", i) for i in range(1, 100)],
    ]
    counts = []
    for items in writes:
        formatted.clear()
        out = Families(cap, kept)
        out.add(BLOCK_A, -1, "before")
        out.blocks_of(items, _item_series)
        counts.append(len(formatted))
        assert _text(out) == _text(_plain(items, cap))
        kept = out.kept
        # What is kept for the next write: what this one asked for, and at most a bounded
        # number of others (a removed container's blocks are not kept forever).
        assert len(kept.blocks[_item_series]) <= len(set(items)) + 64
    assert counts == [3, 1, 1, 100, 0]


@pytest.mark.parametrize("cap", [None, 500])
def test_a_write_after_one_key_changed_merges_only_the_run_around_it(
    cap: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hundreds of blocks, then one changed, one gone and one new in the middle: the lines are
    those of plain adds, and the kept runs' merges are reused, not made again for all."""
    merged: list[int] = []
    original = metrics._by_family

    def counting(blocks: Any) -> Any:
        merged.append(len(blocks))
        return original(blocks)

    monkeypatch.setattr(metrics, "_by_family", counting)
    first = [(f"c{i:03d}", i) for i in range(400)]
    second = [*first[:150], ("c150", 1000), *first[152:300], ("c300a", 5), *first[300:]]
    kept = None
    # Blocks merged in runs, per write: none while all are new (merged as they are), all of
    # them once their runs are made, then only those of the runs around the changes.
    in_runs = []
    for items in (first, first, second, first):
        merged.clear()
        out = Families(cap, kept)
        out.add(BLOCK_A, -1, "before")
        out.blocks_of(items, _item_series)
        assert _text(out) == _text(_plain(items, cap))
        kept = out.kept
        in_runs.append(sum(merged[:-1]))  # the last merge: of the runs' (or blocks') lines
    assert in_runs[:2] == [0, 400]
    assert 0 < in_runs[2] < 200  # runs hold ~7 blocks: a few runs, not half of all
    assert 0 < in_runs[3] < 200


def test_last_answer_derives_again_only_for_other_objects() -> None:
    calls: list[object] = []

    @last_answer
    def derive(a: object, b: object) -> tuple[object, object]:
        calls.append((a, b))
        return (a, b)

    one, two = [1], [2]
    assert derive(one, two) is derive(one, two)
    assert len(calls) == 1
    derive([1], two)  # equal, not the same object: derived again (identity is what is kept)
    derive(one, two)
    assert len(calls) == 3
