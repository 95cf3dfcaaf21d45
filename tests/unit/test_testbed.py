"""A fresh machine passes the tests: every program the tests and benchmarks run comes from a
package scripts/testbed.sh installs (or from Debian's required set). Read from the source only:
no root, nothing run. tests/integration/test_testbed_on_host.py holds the map against dpkg."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from tests.programs import (
    ACCOUNTED,
    BASE,
    NOT_IN_TESTBED,
    PACKAGE_OF,
    ROOT,
    Unfollowed,
    Use,
    not_installed,
    packages_of_testbed,
    scan,
    self_installed,
    shell_programs,
    unmapped,
)


@pytest.fixture(scope="module")
def scanned() -> tuple[list[Use], list[Unfollowed]]:
    return scan()


def listing(uses: list[Use]) -> str:
    return "\n".join(f"  {u.program} at {u.where}" for u in uses)


def test_every_program_the_tests_run_has_a_package(
    scanned: tuple[list[Use], list[Unfollowed]],
) -> None:
    uses, _ = scanned
    missing = unmapped(uses)
    assert not missing, (
        "programs the tests run with no Debian package in tests/programs.py PACKAGE_OF "
        "(find it with `dpkg -S $(which PROG)`):\n" + listing(missing)
    )


def test_the_testbed_installs_every_program_the_tests_run(
    scanned: tuple[list[Use], list[Unfollowed]],
) -> None:
    uses, _ = scanned
    lacking = not_installed(uses, packages_of_testbed())
    assert not lacking, "scripts/testbed.sh PACKAGES lacks:\n" + "\n".join(
        f"  {pkg} for {u.program} at {u.where}" for u, pkg in lacking
    )


def test_every_program_start_is_followed(scanned: tuple[list[Use], list[Unfollowed]]) -> None:
    _, unfollowed = scanned
    assert not unfollowed, (
        "cannot tell which program these start; write its name where it is started, or say "
        "where it is accounted for in tests/programs.py ACCOUNTED:\n"
        + "\n".join(f"  {u.source} at {u.where}" for u in unfollowed)
    )


def test_the_scan_finds_the_programs_that_failed_on_a_fresh_machine(
    scanned: tuple[list[Use], list[Unfollowed]],
) -> None:
    """The scan is only as good as what it finds: these are started in known ways."""
    found = {u.program for u in scanned[0]}
    assert {
        "nft",  # the one that failed: a list literal
        "iptables-legacy",  # an IfExp in a helper
        "promtool",  # a conftest fixture's shutil.which
        "prometheus",
        "setpriv",
        "unshare",
        "dockerd",
        "ctr",
        "ip",
        "mount",  # nsenter ... *command, from the call sites
        "sleep",  # ip netns exec NS sleep
        "debootstrap",  # in scripts/base-image.sh, which a test runs
        "ethtool",  # in bench/veth.sh, which the benchmark runs
        "podman",
    } <= found


def test_the_upcoming_tests_find_their_packages() -> None:
    packages = packages_of_testbed()
    assert {"podman", "nftables", "conntrack", "bridge-utils"} <= packages
    for program in ("podman", "nft", "conntrack", "brctl"):
        assert PACKAGE_OF[program] in packages


def test_exceptions_are_not_stale(scanned: tuple[list[Use], list[Unfollowed]]) -> None:
    uses, _ = scanned
    used = {PACKAGE_OF.get(u.program) for u in uses}
    assert set(NOT_IN_TESTBED) <= used
    assert not set(NOT_IN_TESTBED) & packages_of_testbed()
    assert not BASE & packages_of_testbed(), "a required package needs no installing"
    for (file, source), _reason in ACCOUNTED.items():
        # Keyed as ast.unparse writes the argument (single quotes), which the file may not.
        written = {ast.unparse(node) for node in ast.walk(ast.parse((ROOT / file).read_text()))}
        assert source in written, (file, source)
    assert "prometheus-node-exporter" in self_installed(uses)


# -- the scan and the checks themselves, on made-up sources --------------------------------------


def scan_source(tmp_path: Path, source: str) -> tuple[set[str], list[str]]:
    path = tmp_path / "made_up.py"
    path.write_text(textwrap.dedent(source))
    uses, unfollowed = scan([path])
    return {u.program for u in uses}, [u.source for u in unfollowed]


def test_scan_follows_names_parameters_and_wrappers(tmp_path: Path) -> None:
    found, unfollowed = scan_source(
        tmp_path,
        """
        import shutil
        import subprocess
        from subprocess import check_output as out

        TOOL = "/usr/sbin/conntrack"

        def tables(legacy: bool) -> None:
            binary = "iptables-legacy" if legacy else "iptables"
            subprocess.run([binary, "-S"], check=True)

        def start(argv: list[str]) -> None:
            subprocess.Popen(argv)

        def enter(pid: int, *command: str) -> None:
            subprocess.run(["nsenter", "-t", str(pid), "-m", *command])

        def test_it(brctl: str) -> None:
            start(["nft", "list", "ruleset"])
            start([TOOL, "-L"])
            enter(1, "umount", "/x")
            out(["ip", "netns", "exec", "ns1", "ethtool", "-S", "veth0"])
            subprocess.run("podman ps -q", shell=True)
            subprocess.run([brctl, "show"])
            shutil.which("openssl")

        import pytest

        @pytest.fixture
        def brctl() -> str:
            path = shutil.which("brctl")
            assert path
            return path
        """,
    )
    assert unfollowed == []
    assert found == {
        "iptables",
        "iptables-legacy",
        "nft",
        "conntrack",
        "nsenter",
        "umount",
        "ip",
        "ethtool",
        "podman",
        "brctl",
        "openssl",
    }


def test_scan_reports_what_it_cannot_follow(tmp_path: Path) -> None:
    found, unfollowed = scan_source(
        tmp_path,
        """
        import subprocess
        import sys

        def command() -> list[str]:
            return ["nft"]

        subprocess.run(command())
        subprocess.run([sys.executable, "-m", "exporter"])
        """,
    )
    assert found == set()
    assert unfollowed == ["command()"]


def test_a_program_missing_from_the_map_is_reported() -> None:
    uses = [Use("nft", "a.py:1"), Use("frobnicate", "a.py:2")]
    assert [u.program for u in unmapped(uses)] == ["frobnicate"]


def test_a_package_missing_from_the_testbed_is_reported() -> None:
    """What failed on a fresh machine: nft used, nftables not in PACKAGES."""
    uses = [Use("nft", "tests/x.py:1"), Use("ip", "tests/x.py:2"), Use("sleep", "tests/x.py:3")]
    lacking = not_installed(uses, {"iproute2"})
    assert [(u.program, pkg) for u, pkg in lacking] == [("nft", "nftables")]
    assert not_installed(uses, {"iproute2", "nftables"}) == []


def test_a_package_the_code_installs_itself_is_not_required() -> None:
    uses = [
        Use("apt-get", "bench/b.py:1", ("install", "-y", "prometheus-node-exporter")),
        Use("prometheus-node-exporter", "bench/b.py:2"),
    ]
    assert not_installed(uses, set()) == []
    assert not_installed(uses[1:], set()) != []


def test_packages_of_testbed_reads_a_commented_array() -> None:
    text = "set -e\nPACKAGES=(\n    a b   # why a, b\n    c-d  # and c-d (with parens)\n)\nX=(y)\n"
    assert packages_of_testbed(text) == {"a", "b", "c-d"}


@pytest.mark.parametrize(
    ("script", "programs"),
    [
        ("VETHS=`ifconfig -a | grep veth | sed 's/x//'`", {"ifconfig", "grep", "sed"}),
        ('if docker image inspect "$I" >/dev/null 2>&1; then', {"docker"}),
        ("rootfs=$(mktemp -d)\ntrap 'rm -rf \"$rootfs\"' EXIT", {"mktemp"}),
        ("for V in $VETHS\ndo\n  P=`ethtool -S $V 2>/dev/null`\ndone", {"ethtool"}),
        ('say() { printf "%s" "$*"; }\nsay hi && /usr/sbin/debootstrap x', {"debootstrap"}),
        ('"$DOCKER" version # docker', set()),
    ],
)
def test_shell_programs(script: str, programs: set[str]) -> None:
    assert shell_programs(script) == programs
