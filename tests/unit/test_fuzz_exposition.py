"""Hostile names through every writer: container, image, network, link, chain and interface
names with quotes, backslashes, newlines, NUL, non-ASCII and very long strings; the text must
parse and give back every label value exactly (promtool on the worst: tests/integration)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.collectors import all_collectors, facts_types
from exporter.collectors.layers.facts import LayersFacts
from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.network.facts import NetworkFacts
from exporter.metrics import render
from exporter.readers.docker_api import (
    ContainerRecord,
    DockerNetwork,
    EngineFacts,
    PublishedPort,
    container_record,
    docker_network,
    engine_components,
)
from exporter.readers.layers import ContainerLayer, ImageFacts, LayerFacts
from exporter.readers.netfilter_base import FirewallBackend, interface_name
from exporter.recording import snapshot_from_json
from exporter.selfmetrics import write_self_metrics
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from tests.conftest import FIXTURES
from tests.helpers import Sample, parse
from tests.nat_rules import masquerade

NASTY = [
    '"',
    "\\",
    "\n",
    "\\n",
    '\\"',
    '"\\',
    '\\\\\n"',
    "\0",
    "\r",
    "\r\n",
    "\t",
    "\x7f\x1b[31m",
    "\u2028\u0085",
    "\ufeff",
    "ünïcödé ✓ 🐳",
    "}",
    '{a="b"}',
    "=,",
    " ",
    "# HELP x y",
    "x" * 5000,
]


hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=4).map("".join),
)


WRITERS = (*(c.write_all(Settings()) for c in all_collectors()), write_self_metrics)


def recorded() -> Snapshot:
    return snapshot_from_json((FIXTURES / "host-snapshot.json").read_text(), facts_types())


def samples(text: bytes) -> Counter[tuple[str, frozenset[tuple[str, str]], float]]:
    return Counter((s.name, frozenset(s.labels.items()), s.value) for s in parse(text))


def renamed(
    found: Iterable[Sample], maps: Mapping[str, Mapping[str, str]]
) -> Counter[tuple[str, frozenset[tuple[str, str]], float]]:
    return Counter(
        (s.name, frozenset((k, maps.get(k, {}).get(v, v)) for k, v in s.labels.items()), s.value)
        for s in found
    )


def with_facts(snapshot: Snapshot, name: str, facts: object) -> Snapshot:
    return snapshot.with_state(dataclasses.replace(snapshot.collectors[name], facts=facts))


Fresh = Callable[[int], list[str]]  # n distinct strings


def renaming(fresh: Fresh, old: Iterable[str]) -> dict[str, str]:
    distinct = sorted(set(old))
    return dict(zip(distinct, fresh(len(distinct)), strict=True))


def hostile_host(fresh: Fresh) -> tuple[Snapshot, dict[str, dict[str, str]]]:
    """The recorded host with every container, image, network, component version, link and
    peer interface renamed: the joins are the same, only the strings are hostile."""
    base = recorded()
    engine = base.current("containers", EngineFacts)
    net = base.current("network", NetworkFacts)
    assert engine is not None and net is not None
    names = renaming(fresh, (c.name for c in engine.containers))
    images = renaming(fresh, (c.image for c in engine.containers))
    networks = renaming(fresh, (n.name for n in engine.networks))
    versions = renaming(fresh, (c.version for c in engine.components))
    links = renaming(fresh, (link.name for link in net.links))
    peers = renaming(fresh, (p.name for p in net.peers if p.name is not None))
    engine = dataclasses.replace(
        engine,
        containers=tuple(
            dataclasses.replace(c, name=names[c.name], image=images[c.image])
            for c in engine.containers
        ),
        networks=tuple(
            dataclasses.replace(n, name=networks[n.name], bridge=links.get(n.bridge, n.bridge))
            for n in engine.networks
        ),
        components=tuple(
            dataclasses.replace(c, version=versions[c.version]) for c in engine.components
        ),
    )
    net = dataclasses.replace(
        net,
        links=tuple(dataclasses.replace(link, name=links[link.name]) for link in net.links),
        peers=tuple(
            dataclasses.replace(p, name=None if p.name is None else peers[p.name])
            for p in net.peers
        ),
        earlier_suspects=tuple((i, links[name]) for i, name in net.earlier_suspects),
    )
    snapshot = with_facts(with_facts(base, "containers", engine), "network", net)
    maps = {
        "container": names,
        "owner": names,
        "image": images,
        "network": networks,
        "version": versions,
        "interface": links,
        "bridge": links,
        "port": links,
        "container_interface": peers,
    }
    return snapshot, maps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_names_render_and_every_label_value_round_trips(data: st.DataObject) -> None:
    snapshot, maps = hostile_host(
        lambda n: data.draw(st.lists(hostile_text, min_size=n, max_size=n, unique=True))
    )
    expected = renamed(parse(render(recorded(), WRITERS)), maps)
    assert samples(render(snapshot, WRITERS)) == expected


def nat_and_layers(
    strings: Callable[[], str], raw: Callable[[], bytes]
) -> tuple[Snapshot, dict[str, Any]]:
    """NAT rules, Docker's expectations and image layers named with hostile strings; the rules'
    interfaces decoded by the nf_tables reader's own decoder from arbitrary bytes."""
    network_name, bridge, container, chain, tag = (strings() for _ in range(5))
    out_interface = interface_name(raw())
    rule = masquerade("10.9.0.0/16", out_interface, chain=chain, packets=3, bytes=300)
    network = DockerNetwork("f" * 64, network_name, "bridge", bridge, ("10.8.0.0/16",), False, True)
    web = ContainerRecord(
        "e" * 64, container, tag, "sha256:1", "running", "bridge", 1.0,
        ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80),), addresses=("10.8.0.2",),
    )  # fmt: skip
    nat = NatFacts(
        backends=(FirewallBackend("nftables", True, None, 1, ("nat/DOCKER",)),),
        rules=(rule,),
        expectations=NatExpectations(networks=(network,), containers=(web,)),
        earlier_missing=("masquerade/" + network_name + "/10.8.0.0/16",),
    )
    layers = LayersFacts(
        images=(ImageFacts("sha256:1", (tag, "<none>:<none>"), ("l1",), 10, 4, 1),),
        layers=(LayerFacts("l1", "d1", 10),),
        containers=(ContainerLayer("e" * 64, container, "sha256:1", 1, 11),),
        layers_size=10,
    )
    snapshot = (
        Snapshot()
        .with_state(CollectorState("nat", True, 0.01, 1.0, nat))
        .with_state(CollectorState("layers", True, 0.01, 1.0, layers))
    )
    return snapshot, dict(
        network=network_name, bridge=bridge, container=container, chain=chain, tag=tag,
        out_interface=out_interface,
    )  # fmt: skip


def one(found: list[Sample], name: str) -> Mapping[str, str]:
    (sample,) = [s for s in found if s.name == name]
    return sample.labels


@settings(max_examples=100, deadline=None)
@given(strings=st.lists(hostile_text, min_size=5, max_size=5), raw=st.binary(max_size=40))
def test_hostile_nat_and_layer_names_round_trip(strings: list[str], raw: bytes) -> None:
    pool = iter(strings)
    snapshot, given_ = nat_and_layers(lambda: next(pool), lambda: raw)
    found = parse(render(snapshot, WRITERS))
    masq = one(found, "docker_host_nat_masquerade_rules")
    assert (masq["chain"], masq["out_interface"]) == (given_["chain"], given_["out_interface"])
    missing = one(found, "docker_host_nat_masquerade_missing")
    assert (missing["network"], missing["bridge"]) == (given_["network"], given_["bridge"])
    assert one(found, "docker_host_nat_dnat_missing")["container"] == given_["container"]
    assert one(found, "docker_host_image_info")["tags"] == given_["tag"]
    assert one(found, "docker_host_container_rw_layer_bytes")["container"] == given_["container"]


def engine_entries(encoded: str) -> tuple[Any, Any, Any]:
    """GET /containers/json, /networks and /version entries with one JSON-escaped string
    everywhere a string goes, decoded as the SDK decodes them (json.loads)."""

    def entry(template: str) -> Any:
        return json.loads(template.replace("@", encoded))

    container = entry(
        '{"Id": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",'
        ' "Names": ["/@", "/other/@"], "Image": "@", "State": "running",'
        ' "HostConfig": {"NetworkMode": "@"}, "Labels": {"@": "@"},'
        ' "Ports": [{"PublicPort": 80, "PrivatePort": 8080, "Type": "@", "IP": "@"}],'
        ' "NetworkSettings": {"Networks": {"@": {"IPAddress": "@"}}}}'
    )
    network = entry(
        '{"Id": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",'
        ' "Name": "@", "Driver": "bridge", "Options": {"@": "@"}}'
    )
    version = entry('{"Version": "@", "ApiVersion": "@"}')
    return container, network, version


def engine_snapshot(encoded: str) -> tuple[Snapshot, ContainerRecord]:
    container, network, version = engine_entries(encoded)
    record = container_record(container)
    engine = EngineFacts(
        containers=(record,),
        components=engine_components(version),
        api_version=str(version.get("ApiVersion", "")),
        networks=(docker_network(network),),
    )
    return Snapshot().with_state(CollectorState("containers", True, 0.01, 1.0, engine)), record


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(hostile_text, st.text(max_size=40)))
@example(text="\0")
@example(text="/leading/slashes")
def test_engine_api_entries_with_hostile_strings_render_and_round_trip(text: str) -> None:
    snapshot, record = engine_snapshot(json.dumps(text)[1:-1])
    assert record.name == ("/" + text).lstrip("/") or record.name == "a" * 12
    assert record.image == text
    assert record.network_mode == text
    info = one(parse(render(snapshot, WRITERS)), "docker_host_container_info")
    assert (info["container"], info["image"], info["network_mode"]) == (
        record.name,
        text,
        text,
    )


def test_lone_surrogate_from_the_engine_api_still_renders() -> None:
    # JSON allows "\ud800" and json.loads keeps it as a lone surrogate; dockerd (Go) never
    # writes one, but a proxy or another engine on DOCKER_HOST may. UTF-8 has no encoding for
    # it: it is written as "?".
    snapshot, _ = engine_snapshot("web\\ud800")
    names = {s.labels.get("container") for s in parse(render(snapshot, WRITERS))}
    assert "web?" in names


def distinct_from(strings: Sequence[str]) -> Fresh:
    serial = itertools.count()
    pool = itertools.cycle(strings)
    return lambda n: [next(pool) + str(next(serial)) for _ in range(n)]


HANDFUL = [
    ['"', "\\", "\n", '\\n\\"', "\0", "\r\n\t"],
    ["ünïcödé ✓ 🐳", "\u2028", "\ufeff#", "}{=,", 'a="b"', "# TYPE x counter"],
    ["x" * 5000, "\\" * 4000, "\n" * 3000, '"' * 2000, "\0" * 1000, "é" * 6000],
]
