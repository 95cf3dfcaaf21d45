"""Which commit a copy says it was built from: the package's own _revision.txt when a build
wrote one, else its checkout's .git read as files (a plain clone, a linked worktree, a packed
ref, a detached HEAD), else "unknown"."""

from __future__ import annotations

from pathlib import Path

from exporter import __version__
from exporter.cli import version_line
from exporter.revision import checkout_revision, revision

A = "a" * 40
B = "b" * 40


def test_a_clone_with_loose_or_packed_refs_or_a_detached_head(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(A + "\n")
    assert checkout_revision(tmp_path) == A
    (git / "refs" / "heads" / "main").unlink()
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{B} refs/heads/main\n")
    assert checkout_revision(tmp_path) == B
    (git / "HEAD").write_text(A + "\n")
    assert checkout_revision(tmp_path) == A


def test_a_linked_worktree_keeps_its_refs_in_the_main_repository(tmp_path: Path) -> None:
    common = tmp_path / "main" / ".git"
    own = common / "worktrees" / "fleet"
    own.mkdir(parents=True)
    (own / "HEAD").write_text("ref: refs/heads/fleet\n")
    (own / "commondir").write_text("../..\n")
    (common / "refs" / "heads").mkdir(parents=True)
    (common / "refs" / "heads" / "fleet").write_text(B + "\n")
    tree = tmp_path / "wt-fleet"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {own}\n")
    assert checkout_revision(tree) == B


def test_no_checkout_or_garbage_is_none(tmp_path: Path) -> None:
    assert checkout_revision(tmp_path) is None
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("not a commit\n")
    assert checkout_revision(tmp_path) is None


def test_version_line_names_version_and_revision() -> None:
    line = version_line()
    assert line.startswith(f"docker-host-exporter {__version__} (revision {revision()}, python ")
