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


def test_judging_imports_no_registry_nor_io() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imports(path) if m.split(".")[0] in IMPURE or m.startswith(ABOVE_READERS[1:])
        )
        for path in (EXPORTER / "collectors").glob("*/judge.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def pure_modules() -> list[Path]:
    """Every collector's judge.py (joins and verdicts) and metrics.py (families and the writer):
    pure functions of facts and snapshots."""
    collectors = EXPORTER / "collectors"
    return sorted([*collectors.glob("*/judge.py"), *collectors.glob("*/metrics.py")])


_MUTABLE_CALLS = ("dict", "list", "set", "defaultdict", "deque", "Counter", "OrderedDict")
_MUTATORS = (
    "append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "clear",
    "remove", "discard",
)  # fmt: skip
# Pure modules may import these of the exporter's own: the family registry (declare), the
# snapshot, settings, other collectors' facts and joins. Not the I/O owners:
IO_OWNERS = ("exporter.tick", "exporter.sampler", "exporter.cli", "exporter.web")


def _module_containers(tree: ast.Module) -> dict[str, str]:
    """Names bound at module level to a dict, list or set: name -> its binding's text."""
    found = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        mutable = isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp)
        mutable |= isinstance(value, ast.SetComp)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            mutable |= value.func.id in _MUTABLE_CALLS
        if mutable and isinstance(target, ast.Name):
            found[target.id] = target.id
    return found


def _mutated(tree: ast.Module, names: dict[str, str]) -> set[str]:
    """Which of these module-level containers the module changes: state, not a constant."""
    changed = set()
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                changed.add(target.value.id)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.attr in _MUTATORS
        ):
            changed.add(node.func.value.id)
    return changed & set(names)


def impurities(path: Path) -> set[str]:
    """What makes a module impure: an I/O import (os, pathlib, socket, subprocess, clocks,
    threads, the tick), a function imported from a reader (readers give judges and writers
    their records and constants, capitalised, never their I/O), `global`, or module-level
    state (a module-level dict, list or set the module changes). Constant tables are not
    state, and a pure function memoised with functools.lru_cache keeps none anyone can see."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {f"import {a.name}" for a in node.names if a.name.split(".")[0] in IMPURE}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in IMPURE or node.module.startswith(IO_OWNERS):
                found.add(f"from {node.module}")
            elif node.module.startswith("exporter.readers."):
                found |= {
                    f"from {node.module} import {a.name}"
                    for a in node.names
                    if not a.name[0].isupper()
                }
        elif isinstance(node, ast.Global):
            found |= {f"global {name}" for name in node.names}
    found |= {f"module state {name}" for name in _mutated(tree, _module_containers(tree))}
    return found


def test_judges_and_writers_are_pure() -> None:
    offenders = {str(path.relative_to(ROOT)): sorted(impurities(path)) for path in pure_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_purity_check_catches_what_it_says(tmp_path: Path) -> None:
    impure = tmp_path / "metrics.py"
    impure.write_text(
        "import os\n"
        "from pathlib import Path\n"
        "from exporter.readers.own_container import own_container_id\n"
        "from exporter.readers.docker_api import EngineFacts, RUNNING_STATES\n"
        "from exporter.tick import Tick\n"
        "_seen: dict[str, int] = {}\n"
        "CACHE = list()\n"
        "TABLE = {'a': 1}\n"
        "def f():\n"
        "    global _seen\n"
        "    _seen['x'] = TABLE['a']\n"
        "    CACHE.append(1)\n"
    )
    assert impurities(impure) == {
        "import os",
        "from pathlib",
        "from exporter.readers.own_container import own_container_id",
        "from exporter.tick",
        "global _seen",
        "module state _seen",
        "module state CACHE",
    }
    assert len(pure_modules()) >= 16  # two per collector


def test_every_collector_package_has_its_parts() -> None:
    for package in (EXPORTER / "collectors").iterdir():
        if package.is_dir() and package.name != "__pycache__":
            parts = {p.name for p in package.glob("*.py")}
            missing = {"__init__.py", "facts.py", "metrics.py", "report.py", "source.py"} - parts
            assert not missing, (package.name, missing)
