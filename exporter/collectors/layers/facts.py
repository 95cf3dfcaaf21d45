"""What the layers collector observed: images, their layers (by chain id), containers'
read/write layers, from /system/df and image history."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.readers.layers import ContainerLayer, ImageFacts, LayerFacts

NAME = "layers"  # the collector's name: --collector.layers, its series' collector label


@dataclass(frozen=True)
class LayersFacts:
    images: tuple[ImageFacts, ...]
    layers: tuple[LayerFacts, ...]
    containers: tuple[ContainerLayer, ...]
    layers_size: int  # bytes the layers take on disk, each once (/system/df LayersSize)
