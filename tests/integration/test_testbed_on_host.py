"""tests/programs.py's program -> package map against dpkg on this machine, and the test bed's
packages installed (after scripts/testbed.sh, as `make test` runs it)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import unavailable
from tests.programs import BASE, PACKAGE_OF, packages_of_testbed, scan

# dpkg's database, read only: runs beside the host group (tests/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.host_free]

BIN_DIRS = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/")


def dpkg_query(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dpkg-query", *args], capture_output=True, text=True, timeout=60, check=False
    )


def installed(package: str) -> bool:
    status = dpkg_query("-W", "-f=${Status}", package).stdout
    return status == "install ok installed"


@pytest.fixture(scope="module")
def debian() -> None:
    if shutil.which("dpkg-query") is None:
        unavailable("not a Debian system (no dpkg-query)")


def test_the_testbed_packages_are_installed(debian: None) -> None:
    missing = sorted(p for p in packages_of_testbed() if not installed(p))
    if missing:
        unavailable(f"test bed packages not installed: {missing} (run scripts/testbed.sh)")


def test_each_package_ships_its_program(debian: None) -> None:
    """PACKAGE_OF as `dpkg -S $(which PROG)` says, read the other way (`dpkg-query -L PKG`), so
    that a program earlier on PATH from elsewhere (a docker client in /usr/local/bin) does not
    hide what the package gives. A program that is an alternative (awk, iptables) counts by
    what its link resolves to. Packages the test bed does not install are checked if here."""
    wrong, missing = [], []
    for program, package in sorted(PACKAGE_OF.items()):
        if not installed(package):
            if package in packages_of_testbed() | BASE:
                missing.append(package)
            continue
        files = {f for f in dpkg_query("-L", package).stdout.splitlines() if f.startswith(BIN_DIRS)}
        names = {f.rsplit("/", 1)[-1] for f in files}
        path = shutil.which(program, path=":".join(BIN_DIRS))
        real = os.path.realpath(path) if path else ""
        if program not in names and not {real, real.removeprefix("/usr")} & files:
            wrong.append(f"{package} ships no {program}")
    assert not wrong, wrong
    if missing:
        unavailable(f"not installed: {sorted(set(missing))} (run scripts/testbed.sh)")


def test_dpkg_agrees_on_the_programs_on_path(debian: None) -> None:
    """`dpkg -S $(which PROG)` for every program the tests run that dpkg knows the file of."""
    disagree = []
    for program in sorted({u.program for u in scan()[0]}):
        path = shutil.which(program)
        if path is None:
            continue
        owners = set()
        for candidate in (path, path.removeprefix("/usr")):  # usrmerge: dpkg knows /bin/ip
            for line in dpkg_query("-S", candidate).stdout.splitlines():
                if not line.startswith("diversion by") and ": " in line:
                    owners |= {o.strip() for o in line.split(": ", 1)[0].split(",")}
        if owners and PACKAGE_OF.get(program) not in owners:
            disagree.append(f"{program} ({path}) is dpkg's {owners}, not {PACKAGE_OF.get(program)}")
    assert not disagree, disagree


def test_base_packages_are_required(debian: None) -> None:
    """BASE is what every Debian system has: Priority required."""
    priorities = {p: dpkg_query("-W", "-f=${Priority}", p).stdout for p in sorted(BASE)}
    assert all(v == "required" for v in priorities.values()), priorities
