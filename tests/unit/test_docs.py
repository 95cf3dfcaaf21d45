"""The README cannot drift: its metric table is the declared catalogue, and every flag is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.cli import build_parser
from exporter.collectors import all_collectors
from exporter.metrics import CATALOGUE, MetricSpec

README = Path(__file__).resolve().parents[2] / "README.md"
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


def test_readme_metric_table_is_the_catalogue(request: pytest.FixtureRequest) -> None:
    text = README.read_text()
    block = re.compile(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), re.S)
    if request.config.getoption("--update-golden"):
        README.write_text(block.sub(lambda _: f"{BEGIN}\n{metric_table()}\n{END}", text))
        text = README.read_text()
    found = block.search(text)
    assert found, f"README.md lacks the {BEGIN} block"
    assert found.group(1) == metric_table(), "run pytest --update-golden and review the diff"


def test_every_exported_family_is_documented() -> None:
    text = README.read_text()
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
