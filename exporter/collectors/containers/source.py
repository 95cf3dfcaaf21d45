"""The containers collector's source and flags: the tick's container list, which the host's
shared inventory takes again only when dockerd's event log shows a change."""

from __future__ import annotations

from exporter.collectors import Flag, Source
from exporter.readers.docker_api import EngineFacts
from exporter.settings import Settings, parse_label_allowlist
from exporter.tick import Tick


class ContainerList:
    def read(self, tick: Tick) -> EngineFacts:
        return tick.engine()

    def close(self) -> None:
        """The inventory is the host's: its owner closes it."""


def build(_settings: Settings) -> Source:
    return ContainerList()


FLAGS = (
    Flag(
        "labels",
        parse_label_allowlist,
        (),
        "Docker label keys to export, comma-separated, as label_<key> on "
        "docker_host_container_labels; no label is exported unless named here (default: none)",
    ),
)
