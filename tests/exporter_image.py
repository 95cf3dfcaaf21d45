"""The exporter's container image, built from this checkout on the real engine from a locally
made Debian base (no registry), and run as the README says: in the host's PID and network
namespaces, read-only, with only the capabilities it needs."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.revision import checkout_revision
from tests.conftest import SESSION, TEST_LABEL

ROOT = Path(__file__).resolve().parents[1]
BASE = "dhe-test/debian:bookworm"
IMAGE = "dhe-test/exporter:test"
WHEELHOUSE = ROOT / "deploy" / "docker" / "wheelhouse"
# Where the project is published, as `make image` reads it: pyproject.toml's one place.
SOURCE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
CAPABILITIES = ["SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN", "NET_RAW"]


def labels() -> dict[str, str]:
    """The build arguments `make image` passes: the version, the commit, the source address."""
    return {
        "VERSION": __version__,
        "REVISION": checkout_revision(ROOT) or "unknown",
        "SOURCE": SOURCE,
    }


def build(tag: str = IMAGE) -> str:
    subprocess.run([str(ROOT / "scripts" / "base-image.sh"), BASE], check=True, timeout=900)
    # Wheels built here, so the image builds with no index (this machine's TLS to PyPI goes
    # through a CA the base image does not carry).
    for old in WHEELHOUSE.glob("*.whl"):
        old.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "-w",
            str(WHEELHOUSE),
            "-c",
            str(ROOT / "deploy" / "docker" / "constraints.txt"),
            "setuptools>=77",
            str(ROOT),
        ],
        check=True,
        timeout=900,
    )
    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "--build-arg",
            f"BASE_IMAGE={BASE}",
            "--build-arg",
            "PIP_NO_INDEX=1",
            *(
                arg
                for name, value in labels().items()
                for arg in ("--build-arg", f"{name}={value}")
            ),
            "-t",
            tag,
            str(ROOT),
        ],
        check=True,
        timeout=900,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
    )
    return tag


def run(
    engine: Any,
    image: str,
    name: str,
    port: int,
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    """The exporter's container as the README runs it, serving on 127.0.0.1:port."""
    return engine.containers.run(
        image,
        [f"--web.listen-address=127.0.0.1:{port}", "--sample.interval=1s"],
        name=name,
        detach=True,
        labels={TEST_LABEL: SESSION} if labels is None else labels,
        pid_mode="host",
        network_mode="host",
        read_only=True,
        cap_drop=["ALL"],
        cap_add=CAPABILITIES,
        security_opt=["apparmor=unconfined"],
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}},
        **extra,
    )
