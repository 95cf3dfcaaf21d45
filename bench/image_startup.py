"""The exporter's image: its size, and how long from `docker run` to the first good scrape
(every collector's last run a success), run as the README runs it (host PID and network
namespaces, read-only, the four capabilities). Alternated runs of each image, so a busy
machine weighs on all of them alike.

    python -m bench.image_startup IMAGE [IMAGE ...] [--runs 5]

Only loopback is scraped; each container is removed after its run."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
import uuid
from typing import Any

import docker

from bench.common import percentile
from tests import exporter_image
from tests.helpers import free_port

TIMEOUT = 120.0


def good(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=2) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return False
    states = [
        line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if line.startswith("docker_host_collector_success{")
    ]
    return bool(states) and all(float(v) == 1 for v in states)


def startup(client: Any, image: str) -> float:
    """Seconds from asking the engine to run the image to its first good scrape."""
    port = free_port()
    started = time.monotonic()
    container = exporter_image.run(
        client, image, f"dhe-bench-image-{uuid.uuid4().hex[:6]}", port, labels={"dhe-bench": "1"}
    )
    try:
        while time.monotonic() - started < TIMEOUT:
            if good(f"http://127.0.0.1:{port}"):
                return time.monotonic() - started
            time.sleep(0.05)
        raise SystemExit(f"{image}: no good scrape within {TIMEOUT:.0f}s")
    finally:
        container.remove(force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    client = docker.from_env()
    times: dict[str, list[float]] = {image: [] for image in args.images}
    for _ in range(args.runs):
        for image in args.images:
            times[image].append(startup(client, image))
    results = []
    for image in args.images:
        size = client.images.get(image).attrs["Size"]
        results.append(
            {
                "image": image,
                "size_mb": round(size / 1e6, 1),
                "startup_median_s": round(percentile(times[image], 0.5), 2),
                "startup_max_s": round(max(times[image]), 2),
                "runs": len(times[image]),
            }
        )
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
