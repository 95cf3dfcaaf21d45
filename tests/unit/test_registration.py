"""A collector is registered whole or not at all: its package is on the PACKAGES line under its
own name, its families carry that name, and the README's collector and flag tables, the
dashboards' and alerts' coverage check (test_dashboards) and docs/metrics.md (test_docs) see it.
docs/adding-a-collector.md walks through the steps these tests hold."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

from exporter.collectors import PACKAGES, all_collectors, facts_types
from exporter.metrics import CATALOGUE, render
from exporter.recording import snapshot_from_json
from exporter.settings import Settings
from grafana.build import families
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
COLLECTORS = ROOT / "exporter" / "collectors"
README = (ROOT / "README.md").read_text()


def readme_table(heading: str) -> list[list[str]]:
    """The rows of the first table under a README heading, as cells."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]


def test_every_collector_package_is_registered_under_its_own_name() -> None:
    packages = sorted(
        p.name for p in COLLECTORS.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )
    assert sorted(PACKAGES) == packages, "a package not on the PACKAGES line, or a line too many"
    for package, collector in zip(PACKAGES, all_collectors(), strict=True):
        facts = importlib.import_module(f"exporter.collectors.{package}.facts")
        assert collector.name == package == facts.NAME


def test_every_family_belongs_to_a_registered_collector() -> None:
    # In a fresh interpreter: other tests declare families of their own into the catalogue.
    probe = (
        "import json, exporter.cli\n"
        "from exporter.collectors import all_collectors\n"
        "from exporter.metrics import CATALOGUE\n"
        "all_collectors()\n"
        "print(json.dumps({s.exposed_name: s.collector for s in CATALOGUE.values()}))\n"
    )
    declared: dict[str, str] = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, check=True, timeout=120
        ).stdout
    )
    owners = {c.name for c in all_collectors()} | {"exporter"}
    strays = sorted(name for name, owner in declared.items() if owner not in owners)
    assert strays == [], "declared with a collector= that is not registered"
    for c in all_collectors():
        assert c.name in declared.values(), f"{c.name} exports nothing"
    # The dashboards' and alerts' coverage check reads this list: a new collector's families
    # are on a dashboard, in an alert, or excused in docs/metrics.md.
    assert set(declared) == set(families())


def test_the_readmes_collector_table_is_the_registered_collectors() -> None:
    rows = readme_table("Collectors")
    assert [row[0] for row in rows] == [f"`{c.name}`" for c in all_collectors()]
    for row, c in zip(rows, all_collectors(), strict=True):
        assert row[-1] == ("on" if c.enabled_by_default else "off"), c.name


def test_the_readmes_flag_table_has_every_collector_option_with_its_default() -> None:
    rows = {row[0]: row for row in readme_table("Flags")}
    documented = {flag for flag in rows if re.fullmatch(r"`--collector\.[a-z]+\.[a-z-]+`", flag)}
    documented.discard("`--collector.<name>.interval`")
    options = {f"`--collector.{c.name}.{o.name}`": o for c in all_collectors() for o in c.options}
    assert documented == set(options), "the README's flag table and the registered options differ"
    for flag, option in options.items():
        # The help --help shows ends with the default; the README says the same.
        shown = re.fullmatch(r".*\(default: ([^)]+)\)", option.help, re.S)
        assert shown, f"{flag}: its help should end with (default: ...)"
        assert rows[flag][1].strip("`") == shown.group(1), flag


def test_a_collectors_writer_writes_its_own_families_only() -> None:
    """The series cap is enforced once, as a writer adds its series: it holds only because no
    family is written by two writers."""
    snapshot = snapshot_from_json((FIXTURES / "host-snapshot.json").read_text(), facts_types())
    for c in all_collectors():
        text = render(snapshot, [c.write_all(Settings())]).decode()
        written = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
        by_exposed = {spec.exposed_name: spec for spec in CATALOGUE.values()}
        owners = {name: (by_exposed.get(name) or CATALOGUE[name]).collector for name in written}
        assert set(owners.values()) <= {c.name}, (c.name, owners)
