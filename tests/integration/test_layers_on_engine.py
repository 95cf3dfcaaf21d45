"""The layers collector against the real engine, checked against the engine's own layer store
(/var/lib/docker/image/<driver>/layerdb: one directory per chain id, with its size) and against
/system/df's accounting recomputed from our own layer facts."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.layers.facts import LayersFacts
from exporter.collectors.layers.judge import layer_views
from exporter.collectors.layers.options import TOP_K
from exporter.collectors.layers.source import LayersSource
from exporter.settings import Settings
from exporter.tick import Host
from tests.conftest import BASE_IMAGE, Containers
from tests.helpers import sample_once, select, value, wait_for

pytestmark = pytest.mark.integration

# The layers source asks nothing of the tick: any will do.
TICK = Host.open().tick()

SOCKET = "unix:///var/run/docker.sock"


@pytest.fixture
def images(engine: Any) -> Iterator[dict[str, Any]]:
    """Three images: two on the same base with different tops, one on top of another."""
    tag = uuid.uuid4().hex[:6]
    built: dict[str, Any] = {}

    def build(name: str, dockerfile: str) -> Any:
        image, _ = engine.images.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=f"dhe-test/{name}-{tag}",
            rm=True,
            labels={"dhe-test": "1"},
        )
        built[name] = image
        return image

    build("a", f"FROM {BASE_IMAGE}\nRUN dd if=/dev/zero of=/a bs=1024 count=64\nENV X=1\n")
    build("b", f"FROM {BASE_IMAGE}\nRUN dd if=/dev/zero of=/b bs=1024 count=32\n")
    build(
        "c",
        f"FROM dhe-test/a-{tag}\nRUN dd if=/dev/zero of=/c bs=1024 count=16\n"
        'CMD ["sleep", "3600"]\n',
    )
    yield built
    for image in reversed(list(built.values())):
        engine.images.remove(image.id, force=True)


def layerdb(engine: Any) -> Path:
    info = engine.info()
    return Path(str(info["DockerRootDir"])) / "image" / str(info["Driver"]) / "layerdb" / "sha256"


def test_chain_ids_and_sizes_match_the_engines_layer_store(
    engine: Any, images: dict[str, Any]
) -> None:
    facts = LayersSource(SOCKET, timeout=30).read(TICK)
    store = layerdb(engine)
    for layer in facts.layers:
        entry = store / layer.chain_id.removeprefix("sha256:")
        assert entry.is_dir(), f"no layer {layer.chain_id} in {store}"
        assert int((entry / "size").read_text()) == layer.size
        assert (entry / "diff").read_text().strip() == layer.diff_id
    by_id = {i.id: i for i in facts.images}
    a, c = by_id[images["a"].id], by_id[images["c"].id]
    assert c.layers[: len(a.layers)] == a.layers  # c is built on a: it holds a's layers
    assert len(c.layers) == len(a.layers) + 1


def test_shared_and_unique_bytes_agree_with_the_engine(images: dict[str, Any]) -> None:
    facts: LayersFacts = LayersSource(SOCKET, timeout=30).read(TICK)
    sizes = {layer.chain_id: layer.size for layer in facts.layers}
    holders = {v.layer.chain_id: len(v.images) for v in layer_views(facts)}
    for image in facts.images:
        # Recomputed from our layers: what the engine's df says must follow from them.
        unique = sum(sizes[c] for c in image.layers if holders[c] == 1)
        shared = sum(sizes[c] for c in image.layers if holders[c] > 1)
        assert image.size == unique + shared, image.tags
        assert image.unique_size == unique, image.tags
        assert image.shared_size == shared, image.tags
    _, samples = sample_once(Settings(collectors=("layers",)))
    for name, image in images.items():
        got = {s.name: s.value for s in samples if s.labels.get("image_id") == image.id}
        expected = next(i for i in facts.images if i.id == image.id)
        assert got["docker_host_image_unique_bytes"] == expected.unique_size, name
        assert got["docker_host_image_shared_bytes"] == expected.shared_size, name
    assert value(samples, "docker_host_sharing_saved_bytes") == (
        sum(i.size for i in facts.images) - facts.layers_size
    )


def test_known_layers_cost_no_api_calls(engine: Any, images: dict[str, Any]) -> None:
    source = LayersSource(SOCKET, timeout=30)
    reader = source.reader
    source.read(TICK)
    first = reader.api_calls
    source.read(TICK)
    assert reader.api_calls == first  # steady state: only /system/df
    extra, _ = engine.images.build(
        fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nRUN echo {uuid.uuid4().hex} >/x\n".encode()),
        rm=True,
        labels={"dhe-test": "1"},
    )
    try:
        source.read(TICK)
        assert reader.api_calls == first + 2  # one inspect, one history: the new image only
    finally:
        engine.images.remove(extra.id, force=True)


def test_read_write_layer_of_a_writing_container(containers: Containers) -> None:
    c = containers.run("writer", "dd if=/dev/zero of=/blob bs=1024 count=200 && sleep 3600")

    def written() -> float:
        found = select(
            sample_once(Settings(collectors=("layers",)))[1],
            "docker_host_container_rw_layer_bytes",
            container=c.name,
        )
        return found[0].value if found else 0

    wait_for(lambda: written() >= 200 * 1024, timeout=30, interval=0.5)
    _, samples = sample_once(Settings(collectors=("layers",)))
    assert value(samples, "docker_host_container_virtual_size_bytes", container=c.name) > (
        value(samples, "docker_host_container_rw_layer_bytes", container=c.name)
    )
    assert value(samples, "docker_host_collector_success", collector="layers") == 1


def test_top_k_limits_per_layer_series(images: dict[str, Any]) -> None:
    _, samples = sample_once(Settings(collectors=("layers",), options={TOP_K: 2}))
    assert len(select(samples, "docker_host_layer_size_bytes")) == 2
    assert value(samples, "docker_host_layers") > 2
