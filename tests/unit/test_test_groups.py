"""`make test`'s grouping under pytest-xdist (tests/conftest.py, docs/testing.md): every test
under tests/integration runs in the one host group unless it is marked isolated (then in its
module's own group, and it changes nothing of the host's engine) or host_free (then in none, and
it asks for no root or engine). Checked on the suite as collected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Fixtures that reach the host: a test using any of them (or a fixture built on them) must be in
# the host group.
HOST_FIXTURES = {"root", "engine", "containers", "network", "podman_engine"}
# Fixtures that make something on the host's engine (containers, networks, images, Podman's
# bridge) that a host test judging the whole host would see: no isolated test may use them.
HOST_CHANGING = {"containers", "network", "podman_engine", "exporter_image_tag"}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Loaded with -p into a collect-only run below: one JSON line per collected test."""
    for item in session.items:
        group = item.get_closest_marker("xdist_group")
        print(
            "GROUPS "
            + json.dumps(
                {
                    "id": item.nodeid,
                    "group": group.args[0] if group else None,
                    "host_free": item.get_closest_marker("host_free") is not None,
                    "isolated": item.get_closest_marker("isolated") is not None,
                    "fixtures": sorted(item.fixturenames),  # type: ignore[attr-defined]
                }
            )
        )


def collected() -> list[dict[str, object]]:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.unit.test_test_groups",
            "tests",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [
        json.loads(line.removeprefix("GROUPS "))
        for line in run.stdout.splitlines()
        if line.startswith("GROUPS ")
    ]


def test_integration_tests_are_in_the_host_group_and_nothing_else_reaches_the_host() -> None:
    tests = collected()
    integration = [t for t in tests if str(t["id"]).startswith("tests/integration/")]
    assert integration, "no integration test collected"
    assert any(t["host_free"] for t in integration), "the host_free marker is not seen"
    assert any(t["isolated"] for t in integration), "the isolated marker is not seen"
    for test in tests:
        fixtures = set(test["fixtures"])  # type: ignore[call-overload]
        if test in integration and test["host_free"]:
            assert not test["isolated"], f"{test['id']} is marked both host_free and isolated"
        if test in integration and test["isolated"] and not test["host_free"]:
            module = Path(str(test["id"]).split("::")[0]).stem
            assert test["group"] == f"own-{module}", test["id"]
            changes = HOST_CHANGING & fixtures
            assert not changes, f"{test['id']} is isolated but makes {changes} on the host"
        elif test in integration and not test["host_free"]:
            assert test["group"] == "host", test["id"]
        else:
            assert test["group"] is None, test["id"]
            reaches = HOST_FIXTURES & fixtures
            assert not reaches, f"{test['id']} runs beside the host group but uses {reaches}"


def test_xdist_schedules_the_host_group_as_one_unit() -> None:
    """The groups as the xdist scheduler sees them: it groups by a `@host` (or `@own-<module>`)
    suffix that the workers add to the node id from the mark (a pytest that ignores it, as 9.2
    does with pytest-xdist 3.8, silently spreads the host tests over both workers)."""
    files = (
        "tests/integration/test_engine_client.py",  # host
        "tests/integration/test_checkers.py",  # host_free
        "tests/unit/test_cli.py",
        "tests/integration/test_filter_decoders.py",  # isolated
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *("-v", "-n", "2", "--dist", "loadgroup", "--setup-plan", "-p", "no:cacheprovider"),
            *files,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    planned = [line.rstrip() for line in run.stdout.splitlines() if line.startswith("tests/")]
    assert {p.split("::")[0] for p in planned} >= set(files), planned
    for nodeid in planned:
        assert nodeid.endswith("@host") == nodeid.startswith(files[0]), nodeid
        assert nodeid.endswith("@own-test_filter_decoders") == nodeid.startswith(files[3]), nodeid
