"""deploy/systemd/ on the test bed, which has no systemd as PID 1: the unit passes
`systemd-analyze verify` and `systemd-analyze security --offline` (exposure at most 3.0: the
score is in docs/deploy.md), and the install steps (pipx install, the web config, the unit's
ExecStart) run as the unit would run them: root holding only the unit's capabilities (bounding,
inheritable and ambient sets) and no_new_privs, through setpriv. It must serve with the web
config and see the host: every collector succeeding, no privilege missing, a container's veth
paired. What needs systemd itself to enforce is watched instead: the exporter at work under
strace stays inside the unit's system call filter and address families and maps no memory
writable and executable; the mount sandbox is checked by systemd-analyze alone."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from tests import exporter_image
from tests.conftest import Containers
from tests.helpers import free_port, get, parse, select, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "docker-host-exporter.service"
INSTALLED = "/usr/local/bin/docker-host-exporter"
WEB_CONFIG = "/etc/docker-host-exporter/web-config.yml"
MAX_EXPOSURE = 3.0


def service_section() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def unit_with(binary: str, directory: Path) -> Path:
    """The shipped unit with ExecStart's program at `binary` (verify checks it exists)."""
    path = directory / UNIT.name
    path.write_text(UNIT.read_text().replace(INSTALLED, binary))
    return path


def test_unit_declares_the_four_capabilities_and_the_sandbox() -> None:
    service = service_section()
    wanted = {f"CAP_{c}" for c in exporter_image.CAPABILITIES}
    assert set(service["CapabilityBoundingSet"][0].split()) == wanted
    assert set(service["AmbientCapabilities"][0].split()) == wanted
    assert service["User"] == ["root"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK AF_INET AF_INET6"]
    assert "ProtectProc" not in service and "ProcSubset" not in service  # it reads all of /proc


def test_unit_verifies_and_its_exposure_is_low() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze (package systemd) is part of the test bed"
    binary = str(Path(sys.executable).parent / "docker-host-exporter")
    with tempfile.TemporaryDirectory(prefix="dhe-unit-") as tmp:
        unit = unit_with(binary, Path(tmp))
        verify = subprocess.run(
            [analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=120
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert UNIT.name not in verify.stdout + verify.stderr, verify.stdout + verify.stderr
        security = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", str(unit)],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found[1]) <= MAX_EXPOSURE, security.stdout


@pytest.fixture(scope="module")
def pipx_installed() -> Iterator[Path]:
    """`pipx install .` into a directory of its own (PIPX_HOME, PIPX_BIN_DIR), as the install
    steps do into /opt and /usr/local/bin."""
    pipx = shutil.which("pipx")
    assert pipx, "pipx is part of the test bed"
    with tempfile.TemporaryDirectory(prefix="dhe-pipx-") as tmp:
        env = {"PATH": "/usr/bin:/bin", "PIPX_HOME": f"{tmp}/home", "PIPX_BIN_DIR": f"{tmp}/bin"}
        done = subprocess.run(
            [pipx, "install", str(ROOT)],
            check=False,
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        yield Path(tmp) / "bin" / "docker-host-exporter"


def test_execstart_with_the_units_capabilities_serves_and_sees_the_host(
    pipx_installed: Path, containers: Containers
) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is part of the test bed"
    service = service_section()
    caps = ",".join(
        "+" + c.removeprefix("CAP_").lower() for c in service["AmbientCapabilities"][0].split()
    )
    restricted = [
        f"--bounding-set=-all,{caps}",
        f"--inh-caps=-all,{caps}",
        f"--ambient-caps=-all,{caps}",
        *(["--no-new-privs"] if service["NoNewPrivileges"] == ["yes"] else []),
    ]
    peer = containers.run("unitpeer")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="dhe-etc-") as tmp:
        # The shipped web config, with a user added as the install steps say to.
        web = yaml.safe_load((ROOT / "deploy" / "systemd" / "web-config.yml").read_text()) or {}
        hashed = bcrypt.hashpw(b"scrape-secret", bcrypt.gensalt(rounds=4)).decode()
        web["basic_auth_users"] = {"prometheus": hashed}
        config = Path(tmp) / "web-config.yml"
        config.write_text(yaml.safe_dump(web))
        (exec_start,) = service["ExecStart"]
        argv = [
            arg.replace(INSTALLED, str(pipx_installed)).replace(WEB_CONFIG, str(config))
            for arg in shlex.split(exec_start)
            if arg != "$DHE_ARGS"
        ]
        argv += [f"--web.listen-address=127.0.0.1:{port}", "--sample.interval=1s"]
        proc = subprocess.Popen(
            [setpriv, *restricted, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": "Basic cHJvbWV0aGV1czpzY3JhcGUtc2VjcmV0"}
        try:

            def metrics() -> list[object]:
                try:
                    return list(parse(get(base + "/metrics", timeout=2, headers=auth)))
                except OSError:
                    return []

            def ready() -> bool:
                samples = metrics()
                states = select(samples, "docker_host_collector_success")  # type: ignore[arg-type]
                paired = select(samples, "docker_host_veth_info", container=peer.name)  # type: ignore[arg-type]
                return bool(states) and all(s.value == 1 for s in states) and bool(paired)

            wait_for(ready, timeout=90, interval=0.5)
            samples = metrics()
            missing = [s for s in select(samples, "docker_host_privilege_missing") if s.value]  # type: ignore[arg-type]
            assert missing == []
            # Without the credentials the web config asks for, nothing.
            with pytest.raises(OSError, match="401"):
                get(base + "/metrics", timeout=2)
        finally:
            proc.terminate()
            output, _ = proc.communicate(timeout=30)
    assert "listening" in output, output


def syscalls_of(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls a systemd group names, nested groups expanded."""
    seen = set() if seen is None else seen
    seen.add(group)
    listed = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", group],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    names: set[str] = set()
    for raw in listed.splitlines()[1:]:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            if line not in seen:
                names |= syscalls_of(line, seen)
        else:
            names.add(line)
    return names


def allowed_syscalls() -> set[str]:
    """What the unit's SystemCallFilter= lines leave allowed: the first is an allow list, each
    `~` line takes its groups and names away."""
    allowed: set[str] = set()
    for line in service_section()["SystemCallFilter"]:
        deny = line.startswith("~")
        names: set[str] = set()
        for item in line.removeprefix("~").split():
            names |= syscalls_of(item) if item.startswith("@") else {item}
        allowed = allowed - names if deny else allowed | names
    return allowed


def traced_children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


STRACE_CALL = re.compile(r"^(?:\d+\s+)?([a-z_0-9]+)\(")
EXEC_MEMORY = re.compile(r"^(?:\d+\s+)?(?:mmap|mprotect|pkey_mprotect)\(.*PROT_WRITE\|PROT_EXEC")
SOCKET_FAMILY = re.compile(r"^(?:\d+\s+)?socket\((AF_[A-Z0-9]+)")


def test_the_exporter_at_work_stays_inside_the_units_seccomp_and_address_families(
    pipx_installed: Path, containers: Containers
) -> None:
    """What systemd would enforce, watched instead: the installed exporter, sampling a host with
    a container and scraped, traced by strace from its exec. Every system call it makes is one
    the unit's SystemCallFilter allows, every socket is of a family RestrictAddressFamilies
    allows, and no mapping is writable and executable at once (MemoryDenyWriteExecute)."""
    analyze = shutil.which("systemd-analyze")
    strace = shutil.which("strace")
    assert analyze, "systemd-analyze (package systemd) is part of the test bed"
    assert strace, "strace is part of the test bed"
    allowed = allowed_syscalls()
    families = set(service_section()["RestrictAddressFamilies"][0].split())
    containers.run("tracepeer")
    port = free_port()
    # Only the calls that can fail a check stop the exporter (--seccomp-bpf: the kernel lets
    # the others through untraced, where tracing every call made the work minutes long on a
    # loaded machine): whatever the filter does not allow, and the ones whose arguments are
    # checked or that show the trace is of the work. `?`: a name this strace does not know.
    watched = {"socket", "connect", "recvfrom", "mmap", "mprotect", "pkey_mprotect"}
    untraced = ",".join(f"?{name}" for name in sorted(allowed - watched))
    with tempfile.TemporaryDirectory(prefix="dhe-strace-") as tmp:
        trace = Path(tmp) / "trace"
        proc = subprocess.Popen(
            [
                strace, "-f", "-qq", "--seccomp-bpf", f"--trace=!{untraced}",
                "-o", str(trace), str(pipx_installed),
                f"--web.listen-address=127.0.0.1:{port}", "--sample.interval=1s",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:

            def every_collector_ran_ok() -> bool:
                try:
                    samples = parse(get(base + "/metrics", timeout=5))
                except OSError:
                    return False
                states = select(samples, "docker_host_collector_success")
                return bool(states) and all(s.value == 1 for s in states)

            wait_for(every_collector_ran_ok, timeout=180, interval=1)
        finally:
            # SIGTERM to strace would detach it and leave the exporter running: stop the
            # exporter, and strace ends with it.
            for child in traced_children(proc.pid):
                os.kill(child, signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                for child in traced_children(proc.pid):
                    os.kill(child, signal.SIGKILL)
                proc.kill()
                proc.wait()
        lines = trace.read_text().splitlines()
    used = {m[1] for line in lines if (m := STRACE_CALL.match(line))}
    assert {"socket", "connect", "recvfrom"} <= used  # the trace is of the work itself
    assert used - allowed == set(), f"outside the unit's SystemCallFilter: {used - allowed}"
    opened = {m[1] for line in lines if (m := SOCKET_FAMILY.match(line))}
    assert opened - families == set(), f"outside RestrictAddressFamilies: {opened - families}"
    assert [line for line in lines if EXEC_MEMORY.match(line)] == []
