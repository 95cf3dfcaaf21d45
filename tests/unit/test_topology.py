"""The topology picture on the recorded host and on constructed facts (no root, no engine):
what is drawn, what is marked broken, and that names from the Engine API stay text."""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace

import bcrypt
import pytest

from exporter.collectors import facts_types
from exporter.collectors.nat.facts import NatExpectations, NatFacts
from exporter.collectors.network.facts import NetworkFacts
from exporter.metrics import Exposition
from exporter.readers.docker_api import ContainerRecord, DockerNetwork, EngineFacts, PublishedPort
from exporter.readers.nat_rules import NatRule
from exporter.readers.netfilter_base import FirewallBackend
from exporter.readers.netlink import Link
from exporter.readers.network import ContainerNetns, PeerLink
from exporter.recording import snapshot_from_json
from exporter.snapshot import CollectorState, Snapshot
from exporter.topology import (
    CONTENT_SECURITY_POLICY,
    TopologyPage,
    build,
    clean,
    render_page,
    render_svg,
)
from exporter.web import landing_page, make_server, serve_in_background
from exporter.webconfig import BasicAuth, WebConfig
from tests.conftest import FIXTURES
from tests.helpers import free_port, get
from tests.nat_rules import dnat, masquerade

SVG = "{http://www.w3.org/2000/svg}"
NOW = 1795826950.0


def xml(text: str) -> ET.Element:
    """Our own output, parsed to prove it well-formed (it never holds a DOCTYPE or entity)."""
    return ET.fromstring(text)  # noqa: S314


def recorded() -> Snapshot:
    return snapshot_from_json((FIXTURES / "host-snapshot.json").read_text(), facts_types())


def svg_tree(snapshot: Snapshot) -> ET.Element:
    return xml(render_svg(build(snapshot, "recorded", NOW)))


def boxes(root: ET.Element) -> dict[str, set[str]]:
    """Each box's title (its first line) -> its classes; a title drawn twice merges."""
    found: dict[str, set[str]] = {}
    for g in root.iter(f"{SVG}g"):
        classes = set(g.get("class", "").split())
        if "box" not in classes:
            continue
        text = g.find(f"{SVG}text")
        assert text is not None
        found.setdefault(text.text or "", set()).update(classes)
    return found


def test_recorded_host_every_running_container_veth_and_bridge_is_drawn() -> None:
    snapshot = recorded()
    drawn = boxes(svg_tree(snapshot))
    engine = snapshot.current("containers", EngineFacts)
    net = snapshot.current("network", NetworkFacts)
    assert engine is not None and net is not None
    running = {c.name for c in engine.containers if c.state == "running"}
    assert running <= drawn.keys()
    assert "stopped" not in drawn  # not running: counted, not drawn
    veths = {link.name for link in net.links if link.kind == "veth"}
    bridges = {link.name for link in net.links if link.kind == "bridge"}
    assert veths | bridges <= drawn.keys()
    assert {"bridge", "dhe-user"} <= drawn.keys()  # the Docker networks


def test_recorded_host_broken_things_are_red_with_their_reason() -> None:
    topology = build(recorded(), "recorded", NOW)
    drawn = boxes(xml(render_svg(topology)))
    # The recording's orphans on docker0 (confirmed by two readings) and its orphaned shim.
    assert "broken" in drawn["vorph0"] and "broken" in drawn["vhost0"]
    assert "broken" in drawn["shim 32014"]
    # A veth into another runtime's namespace off Docker's bridges is never judged.
    assert "broken" not in drawn["vx0"] and "broken" not in drawn["vgone0"]
    for healthy in ("vethcc7e13d", "vethe8e475e", "web", "docker0"):
        assert "broken" not in drawn[healthy]
    assert {(p.what, p.reason) for p in topology.problems} == {
        ("veth vorph0", "orphaned: no container"),
        ("veth vhost0", "orphaned: no container"),
        ("shim 32014", "orphaned: Docker lists no such container"),
    }
    # pidhost runs with --pid=host: worth a look, not broken.
    assert "warn" in drawn["pidhost"]


def test_recorded_host_sharers_host_and_none_containers() -> None:
    topology = build(recorded(), "recorded", NOW)
    bands = {b.title: b for b in topology.bands}
    bridge = [[c.lines[0] for c in r.cells if c] for r in bands["bridge"].rows]
    # --network=container:X is drawn right under X, onto X's namespace, with no veth.
    owner_row = next(i for i, cells in enumerate(bridge) if cells[0] == "owner")
    assert bridge[owner_row + 1] == ["sidecar", "shares owner's"]
    default_row = next(i for i, cells in enumerate(bridge) if cells[0] == "n-default")
    assert bridge[default_row + 1] == ["n-sharer", "shares n-default's"]
    host = [r.cells[0].lines[0] for r in bands["host network"].rows if r.cells[0]]
    none = [r.cells[0].lines[0] for r in bands["no network"].rows if r.cells[0]]
    assert (host, none) == (["n-host", "nethost"], ["isolated", "n-none"])
    assert all(len(r.cells) == 2 for r in bands["host network"].rows)  # no veth
    # The bridge's STP state, each port's state, the container's host PID.
    drawn = render_svg(topology)
    assert "STP off" in drawn and "port forwarding" in drawn and "port disabled" in drawn
    assert "PID 1: 31508 on the host" in drawn  # web


def test_the_page_is_self_contained_and_names_the_snapshot() -> None:
    page = render_page(build(recorded(), "rec<host>", NOW), "/probe").decode()
    assert "rec&lt;host&gt;" in page and "rec<host>" not in page
    assert 'href="/probe"' in page
    assert "2026-11-28" in page  # the snapshot's time
    # Nothing loaded from anywhere: no src=, no external href, no @import or url().
    assert re.search(r"\ssrc=", page) is None
    assert re.findall(r'href="([^"]*)"', page) == ["data:,", "/probe", "/"]
    assert "@import" not in page and "url(" not in page
    # The CSP allows exactly the page's one script and one style, by hash.
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    for text in (script, style):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert " style=" not in page  # style attributes would be refused by the CSP


# -- Constructed hosts ---------------------------------------------------------------------

CID, OTHER = "c" * 64, "d" * 64
DOCKER0 = Link(5, "docker0", "bridge", None, None, None, "up", None, False, None)
BRIDGE = DockerNetwork(
    "n" * 64,
    "bridge",
    "bridge",
    "docker0",
    ("172.17.0.0/16",),
    False,
    True,
    gateways=("172.17.0.1",),
)
HOSTILE = "<script>alert(1)</script>\"'&\n\x00\u202e" + "x" * 5000


def container(cid: str, name: str, image: str = "img", **changes: object) -> ContainerRecord:
    record = ContainerRecord(cid, name, image, "sha256:1", "running", "default", 0.0)
    return replace(record, addresses=("172.17.0.2",), **changes)  # type: ignore[arg-type]


def host(
    records: tuple[ContainerRecord, ...],
    rules: tuple[NatRule, ...] = (masquerade(),),
    earlier_missing: tuple[str, ...] = (),
) -> Snapshot:
    """docker0 with one veth into the first container's namespace (nsid 0)."""
    veth = Link(10, "vethweb", "veth", 5, 2, 0, "up", "forwarding", None, None)
    engine = EngineFacts(records, (), "1.41", (BRIDGE,))
    net = NetworkFacts(
        links=(DOCKER0, veth),
        container_netns=(ContainerNetns(records[0].id, 100, 4026532001, 0),),
        peers=(PeerLink(0, 2, "eth0"),),
        unreadable_netns=0,
    )
    nft = FirewallBackend("nftables", True, None, len(rules), ("nat/DOCKER",))
    nat = NatFacts(
        (nft,), rules, NatExpectations((BRIDGE,), records), earlier_missing=earlier_missing
    )
    snapshot = Snapshot()
    for name, facts in (("containers", engine), ("network", net), ("nat", nat)):
        snapshot = snapshot.with_state(CollectorState(name, True, 0.01, NOW - 5, facts))
    return snapshot


def test_network_gateway_and_the_way_out() -> None:
    web = container(CID, "web", ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80),))
    drawn = render_svg(build(host((web,), rules=(masquerade(), dnat(8080))), "h", NOW))
    assert "gateway 172.17.0.1" in drawn and "subnet 172.17.0.0/16" in drawn
    assert "-s 172.17.0.0/16 ! -o docker0" in drawn
    assert "DNAT tcp :8080 -&gt; 172.17.0.2:80" in drawn
    assert "172.17.0.2" in drawn  # eth0's address
    assert 'class="box' in drawn and re.search(r'class="box [^"]*broken', drawn) is None


def test_missing_masquerade_and_dnat_are_red() -> None:
    web = container(CID, "web", ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80),))
    keys = ("masquerade/bridge/172.17.0.0/16", f"dnat/ipv4/{CID}/tcp/8080")
    topology = build(host((web,), rules=(), earlier_missing=keys), "h", NOW)
    assert {(p.what, p.reason) for p in topology.problems} == {
        ("MASQUERADE -s 172.17.0.0/16 ! -o docker0", "missing: traffic leaves unmasqueraded"),
        ("DNAT tcp :8080 -> 172.17.0.2:80 published by web", "missing: the published port "
         "does not reach it"),
    }  # fmt: skip
    # Seen missing once only (no earlier reading agrees): not yet a verdict, not red.
    assert build(host((web,), rules=()), "h", NOW).problems == ()


def test_a_restricted_port_names_the_sources_it_cuts() -> None:
    """issue 22: a port cut for some sources shows as restricted in its DNAT box, not ok."""
    from exporter.collectors.firewall.facts import FirewallFacts, ForwardingSwitches  # noqa: PLC0415
    from exporter.collectors.ports.facts import ContainerListeners, PortsFacts  # noqa: PLC0415
    from exporter.readers.proc_net import BoundSocket  # noqa: PLC0415
    from tests.filter_text import docker20_filter, parse_ruleset  # noqa: PLC0415

    web = container(CID, "web", ports=(PublishedPort("tcp", "0.0.0.0", 8080, 80),))
    snapshot = host((web,), rules=(masquerade(), dnat(8080)))
    chains, rules = parse_ruleset(
        docker20_filter(
            accepts=(("172.17.0.2/32", "docker0", "tcp", 80),),
            user=("-A DOCKER-USER -s 10.77.2.2/32 -j DROP",),
        )
    )
    fw = FirewallFacts(
        backends=(FirewallBackend("nftables", True, None, 2, ("nat/DOCKER", "filter/DOCKER")),),
        expectations=NatExpectations((BRIDGE,), (web,)),
        filter_chains=chains,
        filter_rules=rules,
        forwarding=ForwardingSwitches(1, 0, None, None),
        docker_iptables=True,
        docker_iptables_from="default",
    )
    ports = PortsFacts(
        containers=(web,),
        networks=(BRIDGE,),
        listeners=(ContainerListeners(CID, 100, (BoundSocket("tcp", "0.0.0.0", 80),)),),
        proxies=(),
        userland_proxy=False,
    )
    for name, facts in (("firewall", fw), ("ports", ports)):
        snapshot = snapshot.with_state(CollectorState(name, True, 0.01, NOW - 5, facts))
    drawn = render_svg(build(snapshot, "h", NOW))
    assert "port: restricted (from 10.77.2.2/32)" in drawn
    assert re.search(r'class="box [^"]*broken', drawn) is None


def test_hostile_names_render_as_text_never_markup() -> None:
    hostile = container(CID, HOSTILE, image=HOSTILE)
    also = container(OTHER, "x\ud800y'\"", image="i", network_mode="host")
    snapshot = host((hostile, also))
    page = render_page(build(snapshot, HOSTILE, NOW)).decode()
    assert page.count("<script") == 1  # the page's own
    assert "alert(1)</script>" not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&amp;⏎\ufffd\ufffd" in page
    svg = render_svg(build(snapshot, HOSTILE, NOW))
    root = xml(svg)  # well-formed: no raw control character, surrogate or markup
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    shown = clean(HOSTILE)
    # In the box: cut to fit, on one line; on hover (<title>): all 5,000 characters, as text.
    assert any(t.startswith(shown[:20]) and t.endswith("…") and len(t) < 60 for t in texts)
    assert any(shown in (t.text or "") for t in root.iter(f"{SVG}title"))
    assert "x\ufffdy'\"" in texts
    # Every band's SVG on the page parses too, with the name as text.
    for band in re.findall(r'<svg class="band".*?</svg>', page, re.S):
        xml(band)


def test_a_failed_collector_is_said_and_its_age_shown() -> None:
    snapshot = recorded()
    network = snapshot.collectors["network"]
    failed = CollectorState("network", False, 2.0, network.last_success_time, network.facts, "boom")
    topology = build(snapshot.with_state(failed), "h", (network.last_success_time or 0) + 300)
    page = render_page(topology).decode()
    assert "collector network failed: boom; drawn from its last good data" in page
    assert "(5 min old)" in page
    assert "vorph0" in page  # still drawn, from the last good facts
    never = CollectorState("nat", False, 1.0, None, None, "no nf_tables")
    page = render_page(build(snapshot.with_state(never), "h", NOW)).decode()
    assert "collector nat failed: no nf_tables; it has never answered" in page


def test_empty_snapshot_renders() -> None:
    page = render_page(build(Snapshot(), "h", NOW)).decode()
    assert "Nothing sampled yet" in page
    xml(render_svg(build(Snapshot(), "h", NOW)))


def test_page_rendered_once_per_snapshot() -> None:
    current = [recorded()]
    renders: list[float] = []

    def clock() -> float:
        renders.append(NOW)
        return NOW

    page = TopologyPage(lambda: current[0], "h", clock=clock)
    first = page.current()
    assert page.current() is first and len(renders) == 1
    current[0] = current[0].with_state(current[0].collectors["network"])
    assert page.current() is not first and len(renders) == 2


@pytest.fixture
def server() -> Iterator[str]:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))
    page = TopologyPage(recorded, "h")
    port = free_port()
    httpd = make_server(
        f"127.0.0.1:{port}",
        "/metrics",
        lambda: Exposition(b""),
        lambda: True,
        landing_page("/metrics", [], topology=True),
        web_config=WebConfig(basic_auth=BasicAuth({"u": hashed})),
        topology=page.current,
    )
    serve_in_background(httpd)
    yield f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


def test_topology_behind_basic_auth_with_its_csp(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(server + "/topology")
    assert refused.value.code == 401
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:secret").decode()}
    assert b"vorph0" in get(server + "/topology", headers=auth)
    assert b'href="/topology"' in get(server + "/", headers=auth)
    request = urllib.request.Request(server + "/topology", headers=auth)  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"


def test_topology_off_is_not_found() -> None:
    port = free_port()
    httpd = make_server(
        f"127.0.0.1:{port}",
        "/metrics",
        lambda: Exposition(b""),
        lambda: True,
        landing_page("/metrics", []),
    )
    serve_in_background(httpd)
    try:
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(f"http://127.0.0.1:{port}/topology")
        assert missing.value.code == 404
        assert b"/topology" not in get(f"http://127.0.0.1:{port}/")
    finally:
        httpd.shutdown()
        httpd.server_close()
