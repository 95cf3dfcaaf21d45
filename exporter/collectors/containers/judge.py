"""The containers collector's joins: the container list other collectors name containers by."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from exporter.collectors.containers.facts import NAME
from exporter.memo import last_answer
from exporter.readers.docker_api import CONTAINER_STATES, EngineFacts
from exporter.snapshot import Snapshot


@dataclass(frozen=True)
class Inventory:
    """The Engine API's last good container list, as other collectors join with it."""

    engine: EngineFacts

    @cached_property
    def names(self) -> dict[str, str]:
        """Container id -> name (made once an inventory: every join of every writer asks)."""
        return {c.id: c.name for c in self.engine.containers}


def inventory(snapshot: Snapshot) -> Inventory | None:
    """The last good container list, for other collectors' joins (names, networks): kept
    through a failed run, since a name does not go stale the way a verdict does."""
    engine = snapshot.last_good(NAME, EngineFacts)
    return inventory_of(engine) if engine is not None else None


@last_answer
def inventory_of(engine: EngineFacts) -> Inventory:
    """One Inventory (and one map of names) for all the writers of one container list, and
    the network source's orphan check of the same list."""
    return Inventory(engine)


def display_name(container_id: str, names: Mapping[str, str]) -> str:
    """The container's name; its short id while the Engine API has not told us the name."""
    return names.get(container_id) or container_id[:12]


def containers_by_state(engine: EngineFacts) -> dict[str, int]:
    counts = Counter(c.state for c in engine.containers)
    return {state: counts.get(state, 0) for state in (*CONTAINER_STATES, *sorted(counts))}
