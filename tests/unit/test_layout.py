"""The layering the code map promises: readers import nothing above them, judging is pure,
and a collector's package reaches other collectors only through their facts and joins."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "exporter"
ABOVE_READERS = (
    "exporter.collectors",
    "exporter.tick",
    "exporter.sampler",
    "exporter.metrics",
    "exporter.report",
    "exporter.cli",
    "exporter.web",
)
# What a pure judge may touch: no sockets, files, processes or clocks.
IMPURE = ("os", "socket", "subprocess", "time", "pathlib", "threading", "docker", "ctypes")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_readers_import_nothing_above_them() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imports(path) if m.startswith(ABOVE_READERS))
        for path in (EXPORTER / "readers").glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_judging_is_pure() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imports(path) if m.split(".")[0] in IMPURE or m.startswith(ABOVE_READERS[1:])
        )
        for path in (EXPORTER / "collectors").glob("*/judge.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_collector_package_has_its_parts() -> None:
    for package in (EXPORTER / "collectors").iterdir():
        if package.is_dir() and package.name != "__pycache__":
            parts = {p.name for p in package.glob("*.py")}
            missing = {"__init__.py", "facts.py", "metrics.py", "report.py", "source.py"} - parts
            assert not missing, (package.name, missing)
