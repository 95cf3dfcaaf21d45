"""/topology in Debian's Chromium (driven by Selenium) against the real exporter on the real
engine, and `inspect --format svg` on the same host.

The scene: a network of our own with a container that publishes a port, a container sharing
its network namespace, that network's MASQUERADE rule deleted (restored afterwards), and
orphaned veths on docker0. The browser talks only to the exporter on 127.0.0.1: every other
address goes to a proxy that does not exist, and the page's own requests are checked.

With DHE_PICTURES_DIR set, the page filtered to the scene is saved as topology.png there
(`make pictures`: the README's picture).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service

from exporter.metrics import Exposition
from exporter.readers.docker_api import ContainerRecord, EngineFacts
from exporter.snapshot import CollectorState, Snapshot
from exporter.topology import TopologyPage, clean
from exporter.web import landing_page, make_server, serve_in_background
from tests.conftest import TEST_LABEL, Containers, unavailable
from tests.helpers import exporter_process, free_port, get, wait_for
from tests.host_objects import orphan_veths

pytestmark = pytest.mark.integration

INTERVAL = 3.0  # the exporter's --sample.interval here
ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


def iptables(*args: str) -> None:
    subprocess.run(["iptables", *args], check=True, capture_output=True, timeout=30)


def host_links() -> tuple[set[str], set[str]]:
    """(veths, bridges) of the host, by `ip -j link`."""
    out = subprocess.run(
        ["ip", "-j", "-d", "link", "show"], check=True, capture_output=True, timeout=30
    ).stdout
    links = json.loads(out)
    kinds = [(link["ifname"], (link.get("linkinfo") or {}).get("info_kind")) for link in links]
    return {n for n, k in kinds if k == "veth"}, {n for n, k in kinds if k == "bridge"}


def running_names(engine: Any) -> set[str]:
    listed = engine.api.containers(filters={"status": "running"})
    return {c["Names"][0].lstrip("/") for c in listed if c.get("Names")}


@dataclass
class Scene:
    prefix: str
    network: Any
    subnet: str
    bridge: str
    publisher: Any
    sharer: Any
    orphans: dict[str, str]
    containers: Containers


@pytest.fixture(scope="module")
def scene(engine: Any) -> Iterator[Scene]:
    made = Containers(engine)
    network = engine.networks.create(
        f"{made.prefix}-net", driver="bridge", labels={TEST_LABEL: "1"}
    )
    network.reload()
    subnet = str(network.attrs["IPAM"]["Config"][0]["Subnet"])
    bridge = f"br-{network.id[:12]}"
    rule = ["POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]
    try:
        publisher = made.run("web", network=network.name, ports={"80/tcp": ("127.0.0.1", None)})
        sharer = made.run("sidecar", network_mode=f"container:{publisher.id}")
        with orphan_veths() as orphans:
            iptables("-t", "nat", "-D", *rule)
            try:
                yield Scene(made.prefix, network, subnet, bridge, publisher, sharer, orphans, made)
            finally:
                iptables("-t", "nat", "-A", *rule)
    finally:
        made.cleanup()
        network.remove()


@pytest.fixture(scope="module")
def exporter(scene: Scene) -> Iterator[str]:
    with exporter_process(f"--sample.interval={INTERVAL:g}s") as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        unavailable("Debian's chromium and chromium-driver (scripts/testbed.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root, in a VM
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1460,1000",
        "--hide-scrollbars",
        # Nothing but the exporter on 127.0.0.1: the rest goes to a proxy that is not there,
        # and Chromium's own background traffic is off.
        "--proxy-server=http://127.0.0.1:9",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(chromedriver)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# What each box on the page is: its full first line (from its tooltip) and its classes.
BOXES_JS = """
return Array.from(document.querySelectorAll('g.box')).map(function(g){
  return [g.querySelector('title').textContent.split('\\n')[0], g.getAttribute('class')];});
"""


def boxes(driver: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for title, classes in driver.execute_script(BOXES_JS):
        found.setdefault(title, set()).update(classes.split())
    return found


def requests_and_errors(driver: Any) -> tuple[list[str], list[str]]:
    """URLs the page asked for since the last call, and its console errors."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return urls, errors


def scene_ready(driver: Any, scene: Scene, url: str) -> bool:
    driver.get(url)
    drawn = boxes(driver)
    return (
        "broken" in drawn.get(scene.orphans["on_bridge"], set())
        and "broken" in drawn.get("MASQUERADE", set())
        and scene.sharer.name in drawn
    )


def test_page_draws_the_host_and_marks_what_is_broken(
    scene: Scene, exporter: str, browser: Any
) -> None:
    url = exporter + "/topology"
    wait_for(lambda: scene_ready(browser, scene, url), timeout=10 * INTERVAL, interval=0.5)
    requests_and_errors(browser)  # forget the waiting's
    # What the host holds now, and still holds after the page was read: what must be drawn.
    names_before, (veths_before, bridges_before) = (
        running_names(scene.containers.client),
        host_links(),
    )
    time.sleep(2 * INTERVAL)  # a snapshot taken after that listing
    browser.get(url)
    assert browser.title.startswith("Topology of ")
    drawn = boxes(browser)
    urls, errors = requests_and_errors(browser)
    names_after, (veths_after, bridges_after) = running_names(scene.containers.client), host_links()
    assert errors == []
    assert urls and all(u == url or u.startswith("data:") for u in urls), urls
    assert (names_before & names_after) - drawn.keys() == set()
    assert (veths_before & veths_after) - drawn.keys() == set()
    assert (bridges_before & bridges_after) - drawn.keys() == set()
    # Broken: the orphans on docker0, and our network's MASQUERADE rule.
    for orphan in (
        scene.orphans["on_bridge"],
        scene.orphans["gone_ns"],
        scene.orphans["host_pair"],
    ):
        assert "broken" in drawn[orphan], orphan
    masquerade = [c for t, c in drawn.items() if t == "MASQUERADE" and "broken" in c]
    assert masquerade
    text = browser.find_element("tag name", "body").text
    assert f"-s {scene.subnet} ! -o {scene.bridge}" in browser.page_source
    assert "missing: traffic leaves unmasqueraded" in text
    # The published port's DNAT rule is there; nothing listens in the web container (it runs
    # sleep), so its box names the port's first broken hop, the listener, not a missing rule.
    assert "broken" not in drawn[scene.publisher.name]
    assert scene.sharer.name in drawn
    scene.publisher.reload()
    host_port = scene.publisher.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    dnat = [c for t, c in drawn.items() if t.startswith(f"DNAT tcp :{host_port} ")]
    assert dnat and all("broken" in c for c in dnat), (host_port, dnat)
    assert "port: broken at listener" in text
    assert "missing: the published port does not reach it" not in text
    # Healthy things are not red.
    assert "broken" not in drawn[scene.bridge] and "broken" not in drawn["docker0"]
    # The search box keeps the scene's rows and hides the others.
    browser.find_element("id", "search").send_keys(scene.prefix)
    shown = browser.execute_script(
        "return Array.from(document.querySelectorAll('g.row')).filter(function(r){"
        "return r.getAttribute('display')!=='none'&&r.closest('details').hidden===false;})"
        ".map(function(r){return r.getAttribute('data-s');});"
    )
    assert shown and all(scene.prefix in s or scene.network.name in s for s in shown), shown
    assert requests_and_errors(browser)[1] == []
    pictures = os.environ.get("DHE_PICTURES_DIR")
    if pictures:
        picture(browser, url, scene, Path(pictures) / "topology.png")


def picture(driver: Any, url: str, scene: Scene, path: Path) -> None:
    """The page filtered to the scene (and the orphans), as the README shows it."""
    orphans = " ".join(scene.orphans[k] for k in ("on_bridge", "gone_ns", "host_pair"))
    driver.get("about:blank")
    driver.get(f"{url}#q={scene.prefix} {orphans}")
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1460, min(int(height) + 120, 4000))
    driver.save_screenshot(str(path))


def test_a_new_container_appears_after_a_reload_within_two_intervals(
    scene: Scene, exporter: str, browser: Any
) -> None:
    url = exporter + "/topology"
    browser.get(url)
    late = scene.containers.run("late", network=scene.network.name)
    started = time.monotonic()

    def drawn() -> bool:
        browser.refresh()
        return late.name in boxes(browser)

    wait_for(drawn, timeout=4 * INTERVAL, interval=0.25)
    assert time.monotonic() - started <= 2 * INTERVAL


def test_basic_auth_guards_the_page(tmp_path: Path, root: None) -> None:
    hashed = bcrypt.hashpw(b"topology", bcrypt.gensalt(rounds=4)).decode()
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  viewer: '{hashed}'\n")
    with exporter_process("--sample.interval=5s", f"--web.config.file={config}") as (base, _):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(base + "/topology")
        assert refused.value.code == 401
        auth = {"Authorization": "Basic " + base64.b64encode(b"viewer:topology").decode()}
        assert b"<h1>Topology of " in get(base + "/topology", headers=auth)
    with exporter_process("--sample.interval=5s", "--no-web.topology") as (base, _):
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(base + "/topology")
        assert missing.value.code == 404


HOSTILE = "<script>alert(1)</script>\"'&\n" + "y" * 5000


def test_hostile_names_are_text_in_the_browser(browser: Any) -> None:
    """Docker refuses such names, but the Engine API's answers are not trusted: a page of
    constructed facts, served by the real HTTP server, in the real browser."""
    record = ContainerRecord("e" * 64, HOSTILE, HOSTILE, "sha256:1", "running", "none", 0.0)
    engine = EngineFacts((record,), (), "1.41", ())
    snapshot = Snapshot().with_state(CollectorState("containers", True, 0.1, time.time(), engine))
    page = TopologyPage(lambda: snapshot, HOSTILE)
    port = free_port()
    server = make_server(
        f"127.0.0.1:{port}",
        "/metrics",
        lambda: Exposition(b""),
        lambda: True,
        landing_page("/metrics", [], topology=True),
        topology=page.current,
    )
    serve_in_background(server)
    try:
        browser.get(f"http://127.0.0.1:{port}/topology")
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert.text  # noqa: B018
        assert next(iter(boxes(browser))) == clean(HOSTILE)
        assert browser.execute_script("return document.scripts.length") == 1
        assert requests_and_errors(browser)[1] == []
    finally:
        server.shutdown()
        server.server_close()


def test_inspect_svg_names_the_same_objects(scene: Scene) -> None:
    names_before, (veths_before, bridges_before) = (
        running_names(scene.containers.client),
        host_links(),
    )
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "inspect", "--format", "svg"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    names_after, (veths_after, bridges_after) = running_names(scene.containers.client), host_links()
    root = ET.fromstring(out)  # noqa: S314 - our own output: it must be well-formed XML
    assert root.tag == f"{SVG}svg"
    titles = {
        (t.text or "").split("\n")[0]
        for g in root.iter(f"{SVG}g")
        if "box" in g.get("class", "").split()
        for t in g.iter(f"{SVG}title")
    }
    assert (names_before & names_after) - titles == set()
    assert (veths_before & veths_after) - titles == set()
    assert (bridges_before & bridges_after) - titles == set()
    assert {scene.publisher.name, scene.sharer.name, scene.bridge} <= titles
    assert scene.orphans["on_bridge"] in titles
