"""The layers collector's joins: which images share each layer, and what sharing saves. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.collectors.layers.facts import LayersFacts
from exporter.readers.layers import ImageFacts, LayerFacts


@dataclass(frozen=True)
class LayerView:
    layer: LayerFacts
    images: tuple[str, ...]  # ids of the images holding it
    containers: int  # containers whose image holds it

    @property
    def saved_bytes(self) -> int:
        """What sharing this layer saves: every image but one would otherwise hold a copy."""
        return self.layer.size * max(len(self.images) - 1, 0)


def layer_views(facts: LayersFacts) -> tuple[LayerView, ...]:
    """Every layer with the images that share it, most bytes saved first."""
    holders: dict[str, list[ImageFacts]] = {}
    for image in facts.images:
        for chain_id in image.layers:
            holders.setdefault(chain_id, []).append(image)
    views = [
        LayerView(
            layer=layer,
            images=tuple(i.id for i in holders.get(layer.chain_id, [])),
            containers=sum(i.containers for i in holders.get(layer.chain_id, [])),
        )
        for layer in facts.layers
    ]
    return tuple(sorted(views, key=lambda v: (-v.saved_bytes, -v.layer.size, v.layer.chain_id)))


@dataclass(frozen=True)
class SharingTotals:
    without_sharing: int  # every image holding its own copy of every layer
    on_disk: int  # each layer once, as the engine counts it

    @property
    def saved(self) -> int:
        return max(self.without_sharing - self.on_disk, 0)


def sharing_totals(facts: LayersFacts) -> SharingTotals:
    return SharingTotals(
        without_sharing=sum(image.size for image in facts.images), on_disk=facts.layers_size
    )
