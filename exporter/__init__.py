"""docker-host-exporter: a Docker host's plumbing as Prometheus metrics."""

__version__ = "0.1.0"
