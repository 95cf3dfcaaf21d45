"""containers: every container the Engine API lists, in any state, and the engine's versions."""

from __future__ import annotations

from exporter.collectors import CollectorDef, Source
from exporter.facts import EngineFacts
from exporter.metrics import Families, declare
from exporter.plumbing import Inventory, containers_by_state
from exporter.readers.inventory import DockerInventory, shared_inventory
from exporter.settings import Settings
from exporter.snapshot import Snapshot

NAME = "containers"

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
CONTAINERS = declare(
    "containers",
    "gauge",
    "Containers per state (created, running, paused, restarting, removing, exited, dead).",
    ("state",),
    collector=NAME,
)
ENGINE_COMPONENT_INFO = declare(
    "engine_component_info",
    "gauge",
    "A component of the Docker engine (Engine, containerd, runc, docker-init) and its version; 1.",
    ("component", "version"),
    collector=NAME,
)


def inventory(snapshot: Snapshot) -> Inventory | None:
    """The last good container list, for other collectors' joins."""
    state = snapshot.collectors.get(NAME)
    engine = snapshot.last_good(NAME, EngineFacts)
    if state is None or engine is None or state.last_success_time is None:
        return None
    return Inventory(engine=engine, taken_at=state.last_success_time)


def write(snapshot: Snapshot, out: Families) -> None:
    engine = snapshot.current(NAME, EngineFacts)
    if engine is None:
        return
    for c in engine.containers:
        out.add(CONTAINER_INFO, 1, c.name, c.short_id, c.image, c.image_id, c.state, c.network_mode)
        out.add(CONTAINER_CREATED, c.created, c.name)
    for state, count in containers_by_state(engine).items():
        out.add(CONTAINERS, count, state)
    for component in engine.components:
        out.add(ENGINE_COMPONENT_INFO, 1, component.name, component.version)


class ContainerList:
    """The containers collector's source: the shared inventory, listed again only on change."""

    def __init__(self, inventory: DockerInventory) -> None:
        self.inventory = inventory

    def read(self) -> EngineFacts:
        return self.inventory.current().facts

    def close(self) -> None:
        self.inventory.close()


def engine_inventory(settings: Settings) -> DockerInventory:
    """One per host, whichever collector asks: same socket, same timeout."""
    return shared_inventory(settings.docker_host, str(settings.procfs), settings.timeout(NAME))


def build(settings: Settings) -> Source:
    return ContainerList(engine_inventory(settings))


COLLECTOR = CollectorDef(
    name=NAME,
    description="containers in every state from the Docker Engine API (listed on change)",
    build=build,
    write=write,
    facts_type=EngineFacts,
)
