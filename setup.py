"""Writes the git commit being built into the package (exporter/_revision.txt), so that a wheel,
an sdist and the image know it without a checkout. Everything else is in pyproject.toml.

Where the commit comes from, first found: DHE_REVISION (the Dockerfile's REVISION build
argument: the image's build context has no .git), `git rev-parse HEAD` in this checkout
("-dirty" appended when tracked files differ from it), the REVISION file an sdist carries.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
COMMIT = re.compile(r"[0-9a-f]{40}(?:-dirty)?")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(HERE), *args], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def build_revision() -> str:
    if COMMIT.fullmatch(env := os.environ.get("DHE_REVISION", "").strip()):
        return env
    if (HERE / ".git").exists() and (head := _git("rev-parse", "HEAD")) and COMMIT.fullmatch(head):
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return head + ("-dirty" if dirty else "")
    stored = HERE / "REVISION"
    if stored.is_file() and COMMIT.fullmatch(text := stored.read_text().strip()):
        return text
    return "unknown"


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.dry_run:
            target = Path(self.build_lib) / "exporter" / "_revision.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(build_revision() + "\n")


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: Any) -> None:
        super().make_release_tree(base_dir, files)
        (Path(base_dir) / "REVISION").write_text(build_revision() + "\n")


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
