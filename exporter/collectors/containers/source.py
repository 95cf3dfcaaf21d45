"""The containers collector's source: the tick's container list, which the host's
shared inventory takes again only when dockerd's event log shows a change, and the container
the exporter itself runs in."""

from __future__ import annotations

from dataclasses import replace

from exporter.collectors import Source
from exporter.readers.docker_api import EngineFacts
from exporter.readers.own_container import own_container_id
from exporter.settings import Settings
from exporter.tick import Tick


class ContainerList:
    def __init__(self, own_id: str | None) -> None:
        self.own_id = own_id
        # The tick's list as read, and as returned with own_id: an unchanged list is returned
        # as the very same object, so the renderer's comparison stays an identity check.
        self._last: tuple[EngineFacts, EngineFacts] | None = None

    def read(self, tick: Tick) -> EngineFacts:
        engine = tick.engine()
        if self._last is None or self._last[0] is not engine:
            self._last = (engine, replace(engine, own_container_id=self.own_id))
        return self._last[1]

    def close(self) -> None:
        """The inventory is the host's: its owner closes it."""


def build(_settings: Settings) -> Source:
    # Found once, from the exporter's own /proc/self: a process does not change container.
    return ContainerList(own_container_id())
