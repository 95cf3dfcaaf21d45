"""A release people can pin: the sdist and the wheel built from a clean clone of this checkout
pass `twine check`, carry the metadata and the commit, and the wheel installed into a fresh
virtualenv runs `docker-host-exporter --version` naming that version and that commit; the
image built from this checkout is small, labelled, and names the same."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter import __version__
from tests import exporter_image

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(program: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [program, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{program} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Path, str]]:
    """dist/ of a clean clone (committed files only), and the commit it was cloned at."""
    with tempfile.TemporaryDirectory(prefix="dhe-release-") as tmp:
        clone = Path(tmp) / "clone"
        run("git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone))
        commit = run("git", "-C", str(clone), "rev-parse", "HEAD").strip()
        # The wheel is built from the sdist, as `python -m build` does: the commit must
        # survive the trip through the sdist, which has no .git.
        run(
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--wheel",
            "--outdir",
            f"{tmp}/dist",
            str(clone),
        )
        yield Path(tmp) / "dist", commit


# The sdist, the wheel and a fresh virtualenv: files and tools only, nothing of the host's
# engine or kernel, so they run beside the host group (tests/conftest.py); the image test below
# is the host group's.
@pytest.mark.host_free
def test_sdist_and_wheel_pass_twine_and_carry_metadata_and_commit(
    built: tuple[Path, str],
) -> None:
    dist, commit = built
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    assert wheel.name.startswith(f"docker_host_exporter-{__version__}-")
    assert sdist.name == f"docker_host_exporter-{__version__}.tar.gz"
    run(sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("exporter/_revision.txt").decode().strip() == commit
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
        assert any(n.endswith("licenses/LICENSE") for n in archive.namelist())
    assert f"Version: {__version__}" in text
    assert "License-Expression: Apache-2.0" in text
    assert "Project-URL: Source, https://" in text
    assert "Classifier: Topic :: System :: Monitoring" in text
    with tarfile.open(sdist) as archive:
        top = f"docker_host_exporter-{__version__}"
        revision = archive.extractfile(f"{top}/REVISION")
        assert revision is not None and revision.read().decode().strip() == commit


@pytest.mark.host_free
def test_wheel_in_a_fresh_venv_prints_version_and_commit(built: tuple[Path, str]) -> None:
    dist, commit = built
    (wheel,) = dist.glob("*.whl")
    with tempfile.TemporaryDirectory(prefix="dhe-venv-") as tmp:
        venv = Path(tmp) / "venv"
        run(sys.executable, "-m", "venv", str(venv))
        run(str(venv / "bin" / "pip"), "install", "--quiet", str(wheel))
        # Run from elsewhere than the checkout, so nothing can be read from its .git.
        out = run(str(venv / "bin" / "docker-host-exporter"), "--version", cwd=Path(tmp))
    assert out.startswith(f"docker-host-exporter {__version__} (revision {commit}, python ")


@pytest.fixture(scope="module")
def image(exporter_image_tag: str) -> str:
    """The session's one build of this checkout's image (tests/conftest.py)."""
    return exporter_image_tag


def test_image_is_small_labelled_and_names_its_commit(image: str, engine: Any) -> None:
    """At most 80 MB; the OCI labels and --version carry the version and the commit; nothing
    but the runtime: no shell, no apt, no pip, no docs, and the code byte-compiled."""
    built = engine.images.get(image)
    assert built.attrs["Size"] <= 80_000_000, built.attrs["Size"]
    wanted = exporter_image.labels()
    labels = built.labels
    assert labels["org.opencontainers.image.version"] == wanted["VERSION"] == __version__
    assert labels["org.opencontainers.image.revision"] == wanted["REVISION"]
    assert labels["org.opencontainers.image.source"] == wanted["SOURCE"]
    out = engine.containers.run(image, ["--version"], remove=True).decode()
    assert out.startswith(f"docker-host-exporter {__version__} (revision {wanted['REVISION']},")
    container = engine.containers.create(image, labels={"dhe-fleet": "1"})
    try:
        with tempfile.TemporaryFile() as tar:
            for chunk in container.export():
                tar.write(chunk)
            tar.seek(0)
            with tarfile.open(fileobj=tar) as archive:
                names = set(archive.getnames())
    finally:
        container.remove(force=True)
    for absent in ("usr/bin/sh", "usr/bin/dash", "usr/bin/apt", "usr/bin/dpkg", "usr/share/doc"):
        assert absent not in names, absent
    assert not [n for n in names if "/site-packages/pip" in n or n.endswith("/pip")]
    site = "opt/docker-host-exporter/lib/python3.11/site-packages/exporter"
    assert f"{site}/cli.py" in names
    assert [n for n in names if n.startswith(f"{site}/__pycache__/cli.cpython-")]
    assert [n for n in names if n.startswith("usr/lib/python3.11/__pycache__/argparse.cpython-")]
