"""The layers collector's metric families and writer."""

from __future__ import annotations

from exporter.collectors.layers.facts import NAME, LayersFacts
from exporter.collectors.layers.judge import layer_views, sharing_totals
from exporter.collectors.layers.options import TOP_K
from exporter.metrics import Families, FamilyWriter, declare
from exporter.settings import Settings
from exporter.snapshot import Snapshot

IMAGE_INFO = declare(
    "image_info",
    "gauge",
    "An image and its tags (comma-separated; empty when dangling); 1. Join on image_id.",
    ("image_id", "tags", "dangling"),
    collector=NAME,
)
IMAGE_LAYERS = declare(
    "image_layers", "gauge", "Read-only layers in the image.", ("image_id",), collector=NAME
)
IMAGE_SIZE = declare(
    "image_size_bytes", "gauge", "The image's size: all its layers.", ("image_id",), collector=NAME
)
IMAGE_SHARED = declare(
    "image_shared_bytes",
    "gauge",
    "Bytes of the image's layers that other images hold too (docker system df -v SHARED SIZE).",
    ("image_id",),
    collector=NAME,
)
IMAGE_UNIQUE = declare(
    "image_unique_bytes",
    "gauge",
    "Bytes only this image holds: what removing it would free (docker system df -v UNIQUE SIZE).",
    ("image_id",),
    collector=NAME,
)
IMAGE_CONTAINERS = declare(
    "image_containers", "gauge", "Containers using the image.", ("image_id",), collector=NAME
)
LAYERS = declare(
    "layers", "gauge", "Read-only layers on the host, each counted once.", (), collector=NAME
)
LAYER_SIZE = declare(
    "layer_size_bytes",
    "gauge",
    "A layer's own size, by chain id; only the top K layers by bytes saved "
    "(--collector.layers.top-k).",
    ("layer",),
    collector=NAME,
)
LAYER_IMAGES = declare(
    "layer_images",
    "gauge",
    "Images holding the layer (top K layers by bytes saved).",
    ("layer",),
    collector=NAME,
)
LAYER_CONTAINERS = declare(
    "layer_containers",
    "gauge",
    "Containers whose image holds the layer (top K layers by bytes saved).",
    ("layer",),
    collector=NAME,
)
LAYER_SAVED = declare(
    "layer_sharing_saved_bytes",
    "gauge",
    "Bytes the layer saves by being shared: its size times the images holding it, less one "
    "(top K layers).",
    ("layer",),
    collector=NAME,
)
WITHOUT_SHARING = declare(
    "images_bytes_without_sharing",
    "gauge",
    "Bytes all images would take if none shared a layer.",
    (),
    collector=NAME,
)
ON_DISK = declare(
    "layers_bytes",
    "gauge",
    "Bytes the images' layers take on disk, each layer once (docker system df).",
    (),
    collector=NAME,
)
SAVED = declare(
    "sharing_saved_bytes",
    "gauge",
    "Bytes saved by sharing layers between images.",
    (),
    collector=NAME,
)
RW_LAYER = declare(
    "container_rw_layer_bytes",
    "gauge",
    "Bytes the container has written into its read/write layer (SizeRw).",
    ("container",),
    collector=NAME,
)
VIRTUAL = declare(
    "container_virtual_size_bytes",
    "gauge",
    "The container's whole filesystem: its image's layers plus its read/write layer (SizeRootFs).",
    ("container",),
    collector=NAME,
)


def writer(settings: Settings) -> FamilyWriter:
    return make_writer(settings[TOP_K])


def make_writer(top_k: int) -> FamilyWriter:
    def write(snapshot: Snapshot, out: Families) -> None:
        facts = snapshot.current(NAME, LayersFacts)
        if facts is None:
            return
        for image in facts.images:
            tags = ",".join(t for t in image.tags if t != "<none>:<none>")
            out.add(IMAGE_INFO, 1, image.id, tags, str(image.dangling).lower())
            out.add(IMAGE_LAYERS, len(image.layers), image.id)
            out.add(IMAGE_SIZE, image.size, image.id)
            out.add(IMAGE_SHARED, max(image.shared_size, 0), image.id)
            out.add(IMAGE_UNIQUE, image.unique_size, image.id)
            out.add(IMAGE_CONTAINERS, image.containers, image.id)
        out.add(LAYERS, len(facts.layers))
        for view in layer_views(facts)[:top_k]:
            chain_id = view.layer.chain_id
            out.add(LAYER_SIZE, view.layer.size, chain_id)
            out.add(LAYER_IMAGES, len(view.images), chain_id)
            out.add(LAYER_CONTAINERS, view.containers, chain_id)
            out.add(LAYER_SAVED, view.saved_bytes, chain_id)
        totals = sharing_totals(facts)
        out.add(WITHOUT_SHARING, totals.without_sharing)
        out.add(ON_DISK, totals.on_disk)
        out.add(SAVED, totals.saved)
        for c in facts.containers:
            out.add(RW_LAYER, c.size_rw, c.name)
            out.add(VIRTUAL, c.size_root_fs, c.name)

    return write
