"""The layers collector's source: /system/df, and each new image's layers (inspect and
history, once per image: layers are immutable)."""

from __future__ import annotations

from exporter.collectors import Source
from exporter.collectors.layers.facts import NAME, LayersFacts
from exporter.readers.docker_api import DockerUnavailable
from exporter.readers.layers import ContainerLayer, ImageFacts, LayerFacts, LayersReader
from exporter.settings import Settings
from exporter.tick import Tick


class LayersSource:
    def __init__(self, docker_host: str, timeout: float) -> None:
        self.reader = LayersReader(docker_host, timeout)

    def close(self) -> None:
        self.reader.close()

    def read(self, _tick: Tick) -> LayersFacts:
        df = self.reader.df()
        images: list[ImageFacts] = []
        layers: dict[str, LayerFacts] = {}
        for entry in df.get("Images") or []:
            image_id = entry["Id"]
            try:
                image_layers = self.reader.layers_of(image_id)
            except DockerUnavailable as exc:
                if "No such image" in str(exc):
                    continue  # removed between df and inspect
                raise
            for layer in image_layers:
                layers.setdefault(layer.chain_id, layer)
            images.append(
                ImageFacts(
                    id=image_id,
                    tags=tuple(sorted(entry.get("RepoTags") or [])),
                    layers=tuple(layer.chain_id for layer in image_layers),
                    size=int(entry.get("Size") or 0),
                    shared_size=int(entry.get("SharedSize") or 0),
                    containers=max(int(entry.get("Containers") or 0), 0),
                )
            )
        self.reader.forget_all_but({image.id for image in images})
        containers = tuple(
            sorted(
                (
                    ContainerLayer(
                        id=c["Id"],
                        name=((c.get("Names") or ["/"])[0]).lstrip("/") or c["Id"][:12],
                        image_id=c.get("ImageID") or "",
                        size_rw=int(c.get("SizeRw") or 0),
                        size_root_fs=int(c.get("SizeRootFs") or 0),
                    )
                    for c in df.get("Containers") or []
                ),
                key=lambda c: c.name,
            )
        )
        return LayersFacts(
            images=tuple(sorted(images, key=lambda i: i.id)),
            layers=tuple(sorted(layers.values(), key=lambda layer: layer.chain_id)),
            containers=containers,
            layers_size=int(df.get("LayersSize") or 0),
        )


def build(settings: Settings) -> Source:
    return LayersSource(settings.docker_host, timeout=settings.timeout(NAME))
