"""What the containers collector observed: the Engine API's container and network lists, as the
host's shared inventory reads them (their dataclasses are the Engine API reader's, which
builds them from untrusted JSON: EngineFacts), and what other collectors join with."""

NAME = "containers"  # the collector's name: --collector.containers, its series' collector label
