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


_SERIES_DROPPED_NAME = PREFIX + "series_dropped"  # never capped: it reports the cap


class Families:
    """Collects samples per spec for one render; emits only families that got a sample.

    With max_series, a family stops taking series at that many and counts what it dropped: a
    host with ten thousand layers or veths must not blow up a Prometheus.
    """

    def __init__(self, max_series: int | None = None) -> None:
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        self._max_series = max_series
        self.dropped: dict[str, int] = {}

    def add(self, spec: MetricSpec, value: float, *label_values: str) -> None:
        if len(label_values) != len(spec.labels):
            raise ValueError(f"{spec.name} takes labels {spec.labels}, got {label_values}")
        family = self._families.get(spec.name)
        if family is None:
            family = self._families[spec.name] = spec.family()
        capped = self._max_series is not None and spec.name != _SERIES_DROPPED_NAME
        if capped and len(family.samples) >= (self._max_series or 0):
            self.dropped[spec.name] = self.dropped.get(spec.name, 0) + 1
            return
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


def render(
    snapshot: Snapshot, writers: Iterable[FamilyWriter], max_series: int | None = None
) -> bytes:
    families = Families(max_series)
    for write in writers:
        write(snapshot, families)
    for name, count in sorted(families.dropped.items()):
        families.add(SERIES_DROPPED, count, name)
    return generate_latest(families)


SERIES_DROPPED = declare(
    _SERIES_DROPPED_NAME.removeprefix(PREFIX),
    "gauge",
    "Series the last exposition left out of this family, over --metrics.max-series-per-family.",
    ("family",),
    collector="exporter",
)
