"""The containers collector's metric families and writer."""

from __future__ import annotations

from dataclasses import replace

from exporter.collectors.containers.facts import NAME
from exporter.collectors.containers.judge import containers_by_state
from exporter.collectors.containers.options import LABELS
from exporter.metrics import Families, FamilyWriter, declare
from exporter.readers.docker_api import ContainerRecord, EngineFacts
from exporter.settings import Settings, label_name
from exporter.snapshot import Snapshot

CONTAINER_INFO = declare(
    "container_info",
    "gauge",
    "A container the Docker Engine API lists, in any state; 1. Join on container.",
    ("container", "container_id", "image", "image_id", "state", "network_mode"),
    collector=NAME,
)
CONTAINER_CREATED = declare(
    "container_created_timestamp_seconds",
    "gauge",
    "When the container was created, as Unix time.",
    ("container",),
    collector=NAME,
)
BY_STATE = declare(
    "containers",
    "gauge",
    "Containers per state (created, running, paused, restarting, removing, exited, dead).",
    ("state",),
    collector=NAME,
)
CONTAINER_LABELS = declare(
    "container_labels",
    "gauge",
    "The container's Docker labels named in --collector.containers.labels, each as "
    "label_<key> (other characters than letters, digits and _ become _); 1. Only with that flag: "
    "labels may hold anything, so none is exported unless asked for.",
    ("container",),
    collector=NAME,
)
EXPORTER_CONTAINER = declare(
    "exporter_container_info",
    "gauge",
    "The container this exporter runs in (from the files Docker bind-mounts into it, or its "
    "cgroup); 1. It shares the host's PID and network namespaces by design: alert rules leave "
    "it out with `unless on(instance, container) docker_host_exporter_container_info`.",
    ("container", "container_id"),
    collector=NAME,
)
ENGINE_COMPONENT_INFO = declare(
    "engine_component_info",
    "gauge",
    "A component of the Docker engine (Engine, containerd, runc, docker-init) and its version; 1.",
    ("component", "version"),
    collector=NAME,
)


def writer(settings: Settings) -> FamilyWriter:
    """The writer for --collector.containers.labels."""
    return make_writer(settings[LABELS])


def make_writer(label_keys: tuple[str, ...]) -> FamilyWriter:
    labels_spec = replace(CONTAINER_LABELS, labels=("container", *map(label_name, label_keys)))

    def write(snapshot: Snapshot, out: Families) -> None:
        engine = snapshot.current(NAME, EngineFacts)
        if engine is None:
            return
        write_engine(engine, out)
        for c in engine.containers:
            if c.id == engine.own_container_id:
                out.add(EXPORTER_CONTAINER, 1, c.name, c.short_id)
        if label_keys:
            for c in engine.containers:
                values = dict(c.labels)
                out.add(labels_spec, 1, c.name, *(values.get(k, "") for k in label_keys))

    return write


def write_engine(engine: EngineFacts, out: Families) -> None:
    out.blocks_of(engine.containers, _container_series)  # formatted again only when changed
    for state, count in containers_by_state(engine).items():
        out.add(BY_STATE, count, state)
    for component in engine.components:
        out.add(ENGINE_COMPONENT_INFO, 1, component.name, component.version)


def _container_series(c: ContainerRecord, out: Families) -> None:
    out.add(CONTAINER_INFO, 1, c.name, c.short_id, c.image, c.image_id, c.state, c.network_mode)
    out.add(CONTAINER_CREATED, c.created, c.name)
