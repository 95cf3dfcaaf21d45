"""What the containers collector observed: the Engine API's container and network lists, as the
host's shared inventory reads them (their dataclasses are the Engine API reader's, which
builds them from untrusted JSON), and what other collectors join with."""

from exporter.readers.docker_api import (
    CONTAINER_STATES,
    ContainerRecord,
    DockerNetwork,
    EngineComponent,
    EngineFacts,
    PublishedPort,
)

__all__ = [
    "CONTAINER_STATES",
    "ContainerRecord",
    "DockerNetwork",
    "EngineComponent",
    "EngineFacts",
    "PublishedPort",
]
