"""Metric families: each declared once (name, type, help, labels), rendered from a Snapshot.

Collectors declare their families here at import time with `declare`; the README's metric table
is checked against `CATALOGUE` by a test, so the docs cannot drift from what is exported.
Families are built fresh for every snapshot, so a vanished container's series vanish with it.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.snapshot import Snapshot

PREFIX = "docker_host_"
SAMPLED_NOTE = " Sampled on the collector's interval, not at scrape time."

MetricKind = Literal["gauge", "counter"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]
    collector: str

    @property
    def exposed_name(self) -> str:
        """As it appears in the exposition: counters gain `_total`."""
        return self.name + "_total" if self.kind == "counter" else self.name

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        text = self.help + SAMPLED_NOTE
        if self.kind == "counter":
            return CounterMetricFamily(self.name, text, labels=self.labels)
        return GaugeMetricFamily(self.name, text, labels=self.labels)


CATALOGUE: dict[str, MetricSpec] = {}


def declare(
    name: str, kind: MetricKind, help: str, labels: Sequence[str] = (), *, collector: str
) -> MetricSpec:
    full = PREFIX + name
    if full in CATALOGUE:
        raise ValueError(f"metric {full} declared twice")
    spec = MetricSpec(full, kind, help, tuple(labels), collector)
    CATALOGUE[full] = spec
    return spec


class Families:
    """Collects samples per spec for one render; emits only families that got a sample."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, spec: MetricSpec, value: float, *label_values: str) -> None:
        if len(label_values) != len(spec.labels):
            raise ValueError(f"{spec.name} takes labels {spec.labels}, got {label_values}")
        family = self._families.get(spec.name)
        if family is None:
            family = self._families[spec.name] = spec.family()
        family.add_metric(list(label_values), value)

    def extend(self, metrics: Iterable[Metric]) -> None:
        """Families declared elsewhere by convention (client_python's process_* metrics)."""
        for metric in metrics:
            self._families[metric.name] = metric  # type: ignore[assignment]

    def collect(self) -> list[Metric]:
        return list(self._families.values())


FamilyWriter = Callable[[Snapshot, Families], None]


@dataclass(frozen=True)
class Exposition:
    """One snapshot rendered once; every scrape until the next snapshot serves these bytes."""

    text: bytes
    gzipped: bytes

    @classmethod
    def of(cls, text: bytes) -> Exposition:
        return cls(text=text, gzipped=gzip.compress(text, compresslevel=6, mtime=0))


def render(snapshot: Snapshot, writers: Iterable[FamilyWriter]) -> bytes:
    families = Families()
    for write in writers:
        write(snapshot, families)
    return generate_latest(families)
