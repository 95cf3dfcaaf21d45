"""Image layers from the Engine API only (GET /system/df, /images/{id}/json, /images/{id}/history),
never from /var/lib/docker, whose layout differs by storage driver and is gone with the
containerd image store.

Layers are immutable: an image's layers, keyed by chain id, are worked out once per image id and
kept for the process's life (pruned when the image goes), so a later sample calls the API only
for images it has not seen. /system/df is the engine's own accounting of shared and unique bytes;
it is expensive and refuses to run twice at once, so this collector runs on a slow interval.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.readers.docker_api import DockerReader, DockerUnavailable


@dataclass(frozen=True)
class LayerFacts:
    """A read-only layer, identified by its chain id (its content and everything below it)."""

    chain_id: str
    diff_id: str
    size: int


@dataclass(frozen=True)
class ImageFacts:
    id: str
    tags: tuple[str, ...]
    layers: tuple[str, ...]  # chain ids, base first
    size: int
    shared_size: int  # as the engine's /system/df reports it
    containers: int

    @property
    def dangling(self) -> bool:
        return not any(tag != "<none>:<none>" for tag in self.tags)

    @property
    def unique_size(self) -> int:
        return self.size - max(self.shared_size, 0)


@dataclass(frozen=True)
class ContainerLayer:
    """A container's thin read/write layer, and the size of its whole filesystem."""

    id: str
    name: str
    image_id: str
    size_rw: int
    size_root_fs: int


log = logging.getLogger(__name__)

DF_BUSY = "a disk usage operation is already running"
_LAYER_MAKING = ("RUN", "ADD", "COPY", "/bin/sh -c ", "|")


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain ids: chain(L0) = diff(L0); chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            digest = hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
            chains.append(f"sha256:{digest}")
    return chains


def _makes_a_layer(created_by: str) -> bool:
    """Whether a history entry is a filesystem change, not metadata (ENV, CMD, LABEL, …)."""
    if "#(nop)" in created_by:
        return "ADD" in created_by or "COPY" in created_by
    return created_by.startswith(_LAYER_MAKING) or not created_by


def layer_sizes(history: Sequence[Mapping[str, Any]], layer_count: int) -> list[int]:
    """Each layer's size, base first, from GET /images/{id}/history (newest first).

    History has one entry per instruction; only some made a layer. Zero-size metadata entries
    are dropped until the counts match; if they still do not (a squashed or imported image),
    sizes are not guessed: the image's size goes to its top layer and the rest count 0.
    """
    entries = list(reversed(history))
    surplus = len(entries) - layer_count
    kept: list[Mapping[str, Any]] = []
    for entry in entries:
        metadata = int(entry.get("Size") or 0) == 0 and not _makes_a_layer(
            str(entry.get("CreatedBy") or "")
        )
        if surplus > 0 and metadata:
            surplus -= 1
            continue
        kept.append(entry)
    while surplus > 0:  # zero-size entries that looked like layers: drop the newest
        zero = next(
            (i for i in range(len(kept) - 1, -1, -1) if int(kept[i].get("Size") or 0) == 0), None
        )
        if zero is None:
            break
        kept.pop(zero)
        surplus -= 1
    if len(kept) != layer_count:
        total = sum(int(e.get("Size") or 0) for e in entries)
        return [0] * (layer_count - 1) + [total] if layer_count else []
    return [int(e.get("Size") or 0) for e in kept]


class LayersReader:
    def __init__(self, docker_host: str, timeout: float) -> None:
        self.docker = DockerReader(docker_host, timeout=timeout)
        self.timeout = timeout
        self._image_layers: dict[str, tuple[LayerFacts, ...]] = {}
        self.api_calls = 0  # inspect + history calls, for tests and the benchmark

    def close(self) -> None:
        self.docker.close()

    def df(self) -> dict[str, Any]:
        """GET /system/df, waiting (up to half the timeout) while another client's runs."""
        deadline = time.monotonic() + self.timeout / 2
        while True:
            try:
                result: dict[str, Any] = self.docker.call("df")
                return result
            except DockerUnavailable as exc:
                # Another client's df is running; the engine refuses a second one.
                if DF_BUSY not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def layers_of(self, image_id: str) -> tuple[LayerFacts, ...]:
        """An image's layers, base first; computed once per image: layers are immutable."""
        cached = self._image_layers.get(image_id)
        if cached is None:
            inspect = self.docker.call("inspect_image", image=image_id)
            history = self.docker.call("history", image=image_id)
            self.api_calls += 2
            diff_ids = list((inspect.get("RootFS") or {}).get("Layers") or [])
            sizes = layer_sizes(history, len(diff_ids))
            cached = tuple(
                LayerFacts(chain_id=chain, diff_id=diff, size=size)
                for chain, diff, size in zip(chain_ids(diff_ids), diff_ids, sizes, strict=True)
            )
            self._image_layers[image_id] = cached
        return cached

    def forget_all_but(self, image_ids: set[str]) -> None:
        """Keep the layers of these images only: the others were removed."""
        for gone in self._image_layers.keys() - image_ids:
            del self._image_layers[gone]
