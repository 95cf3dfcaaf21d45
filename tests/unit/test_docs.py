"""The docs cannot drift: docs/metrics.md's table is the declared catalogue, every flag is in the
README, and the README's code map is the tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.cli import build_parser
from exporter.collectors import all_collectors
from exporter.metrics import CATALOGUE, MetricSpec

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
METRICS = ROOT / "docs" / "metrics.md"
BEGIN, END = "<!-- metrics:begin -->", "<!-- metrics:end -->"


def exported() -> list[MetricSpec]:
    """Grouped by collector in their fixed order; declaration order within a module."""
    owners = [c.name for c in all_collectors()] + ["exporter"]
    return [spec for owner in owners for spec in CATALOGUE.values() if spec.collector == owner]


def metric_table() -> str:
    rows = ["| metric | type | labels | collector | meaning |", "|---|---|---|---|---|"]
    for spec in exported():
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "-"
        rows.append(
            f"| `{spec.exposed_name}` | {spec.kind} | {labels} | {spec.collector} | {spec.help} |"
        )
    return "\n".join(rows)


def test_metric_table_is_the_catalogue(request: pytest.FixtureRequest) -> None:
    text = METRICS.read_text()
    block = re.compile(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), re.S)
    if request.config.getoption("--update-golden"):
        METRICS.write_text(block.sub(lambda _: f"{BEGIN}\n{metric_table()}\n{END}", text))
        text = METRICS.read_text()
    found = block.search(text)
    assert found, f"docs/metrics.md lacks the {BEGIN} block"
    assert found.group(1) == metric_table(), "run pytest --update-golden and review the diff"


def test_every_exported_family_is_documented() -> None:
    text = METRICS.read_text()
    missing = [spec.name for spec in exported() if f"`{spec.exposed_name}`" not in text]
    assert missing == []


def test_every_flag_is_documented() -> None:
    text = README.read_text()
    parsers = (build_parser(all_collectors()), build_parser(all_collectors(), inspect=True))
    flags = {
        option
        for parser in parsers
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--version")
    }
    generic = {f for f in flags if re.match(r"--(no-)?collector\.", f)}
    missing = sorted(f for f in flags - generic if f not in text)
    assert missing == []
    for c in all_collectors():
        assert f"`{c.name}`" in text, f"collector {c.name} is not described in README.md"
    assert "--collector.<name>" in text and "--no-collector.<name>" in text


def code_map() -> set[str]:
    """The paths the README's code map names, as exporter/... relative paths."""
    text = README.read_text()
    block = text[text.index("## Code map") :]
    block = block[block.index("```\n") + 4 :]
    block = block[: block.index("\n```")]
    found: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        name = line.strip().split()[0]
        depth = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= depth:
            stack.pop()
        path = "/".join([p for _, p in stack] + [name.rstrip("/")])
        found.add(path)
        if name.endswith("/"):
            stack.append((depth, name.rstrip("/")))
    return found


def test_the_code_map_is_the_tree() -> None:
    """Every module and package of exporter/ is on the map (a collector package's own files
    are described once, below it), and everything on the map exists."""
    mapped = code_map()
    for path in mapped:
        assert (ROOT / path).exists(), f"the README's code map names {path}, which is gone"
    collectors = ROOT / "exporter" / "collectors"
    tree = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "exporter").rglob("*")
        if p.name != "__pycache__"
        and "__pycache__" not in p.parts
        and p.name not in ("__init__.py", "__main__.py")
        and p.parent.parent != collectors  # a collector's facts.py, judge.py, ...
    }
    assert tree - mapped == set(), "add these to the README's code map"


# A measured cost: "37 ms", "~1.7 ms", "13 MB" (not a flag value such as `6ms`).
_FIGURE = re.compile(r"(?<![`\w.])~?\d[\d,.]*\s?(?:ms|µs|us|MB)\b(?!`)")
_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
_COMMAND = re.compile(r"`(python -m bench\.|make )")


def _blocks(text: str) -> list[str]:
    """A markdown file's paragraphs, list items, table rows and headings, code left out."""
    blocks: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        starts = line.lstrip().startswith("- ") or re.match(r"\d+\. ", line)
        if not line.strip() or line.startswith(("|", "#")) or starts:
            if current:
                blocks.append(" ".join(current))
                current = []
            if line.startswith(("|", "#")):
                blocks.append(line)
                continue
        if line.strip():
            current.append(line.strip())
    if current:
        blocks.append(" ".join(current))
    return blocks


def test_every_performance_figure_names_its_benchmark_and_date() -> None:
    """Outside docs/benchmarks.md (where the figures are measured, each section dated), a cost
    in ms, µs or MB comes with the command that measured it and the date: the README once said
    37 ms per sample where the whole process measured more than twice that."""
    docs = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    unsourced = [
        f"{path.name}: {block[:120]}"
        for path in docs
        if path.name != "benchmarks.md"
        for block in _blocks(path.read_text())
        if _FIGURE.search(block) and not (_COMMAND.search(block) and _DATE.search(block))
    ]
    assert unsourced == []
    dated = re.findall(
        r"^## .*, (20\d\d-\d\d-\d\d)$", (ROOT / "docs" / "benchmarks.md").read_text(), re.M
    )
    assert len(dated) >= 7
