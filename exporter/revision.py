"""The git commit this copy of the exporter was built from, for `--version` and build_info.

A wheel, an sdist and the image carry it in `_revision.txt`, written when the package is built
(setup.py); a source checkout run in place (`pip install -e`) has none, and is read from its own
`.git` files, with no git process. Nothing known: "unknown", never a guess.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

UNKNOWN = "unknown"
_COMMIT = re.compile(r"[0-9a-f]{40}(?:-dirty)?")


@functools.cache
def revision() -> str:
    try:
        text = resources.files("exporter").joinpath("_revision.txt").read_text().strip()
    except (OSError, ModuleNotFoundError):
        text = ""
    if _COMMIT.fullmatch(text):
        return text
    return checkout_revision(Path(__file__).resolve().parents[1]) or UNKNOWN


def checkout_revision(top: Path) -> str | None:
    """HEAD's commit of the git checkout at `top` (a worktree's `.git` file followed), or None."""
    try:
        git = top / ".git"
        if git.is_file():
            text = git.read_text().strip()
            if not text.startswith("gitdir: "):
                return None
            git = (top / text.removeprefix("gitdir: ")).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if _COMMIT.fullmatch(head) else None
        ref = head.removeprefix("ref: ")
        # A linked worktree keeps HEAD of its own but its refs in the main repository.
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                commit = (base / ref).read_text().strip()
                return commit if _COMMIT.fullmatch(commit) else None
        for base in (git, common):
            if (base / "packed-refs").is_file():
                for line in (base / "packed-refs").read_text().splitlines():
                    commit, _, name = line.partition(" ")
                    if name == ref and _COMMIT.fullmatch(commit):
                        return commit
    except OSError:
        return None
    return None
