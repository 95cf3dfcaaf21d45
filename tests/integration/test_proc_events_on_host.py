"""The process table following the real kernel's process events (the proc connector): processes
and containers of the test's own started and stopped, an exec, a zombie, a socket overflowed on
purpose; after each, the table equals a scan from scratch."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.collectors.processes.facts import ProcessFacts
from exporter.collectors.processes.source import ProcessTable
from exporter.readers.docker_api import DockerReader
from exporter.readers.inventory import DockerInventory
from exporter.readers.proc_events import ProcEvents
from exporter.readers.procfs import ProcessScan, ProcfsReader, ProcStat
from exporter.tick import Host
from tests.conftest import Containers
from tests.helpers import stop, wait_for

pytestmark = pytest.mark.integration

# Other processes come and go on the shared machine between two scans: a comparison is taken
# again until both scans saw the same moment (a wrong table never does).
ATTEMPTS = 30


def _host(reader: ProcfsReader) -> Host:
    return Host(reader, DockerInventory(DockerReader("unix:///nowhere", 0.1)))


def _key(scan: ProcessScan) -> set[tuple[int, int, int, bool, str]]:
    # Kernel workers rename themselves after the work they do ("kworker/0:1-events") with no
    # event: their names are not compared (nothing reads them).
    return {
        (s.pid, s.ppid, s.start_ticks, s.state == "Z", s.comm if s.ppid != 2 else "")
        for s in scan.table
    }


def equals_a_scan_from_scratch(reader: ProcfsReader) -> bool:
    for _ in range(ATTEMPTS):
        if _key(reader.scan()) == _key(ProcfsReader(follow_events=False).scan()):
            return True
    return False


def process(reader: ProcfsReader, pid: int) -> ProcStat | None:
    return next((s for s in reader.scan().table if s.pid == pid), None)


@pytest.fixture
def reader(root: None) -> Iterator[ProcfsReader]:
    followed = ProcfsReader()
    yield followed
    followed.close()


def test_the_table_follows_an_exec_a_zombie_and_their_ends(reader: ProcfsReader) -> None:
    host = _host(reader)
    reader.scan()
    assert reader.follows_events, "root in the host's namespaces subscribes to the connector"
    # A shell of our own that execs sleep once told to.
    shell = subprocess.Popen(
        ["sh", "-c", "read line; exec sleep 60"], stdin=subprocess.PIPE, text=True
    )
    # A parent that never reaps its child: sleep exec'd over the shell that started it.
    parent = subprocess.Popen(["sh", "-c", "sleep 0 & exec sleep 60"])
    try:
        wait_for(lambda: (p := process(reader, shell.pid)) is not None and p.comm == "sh")
        assert shell.stdin is not None
        shell.stdin.write("\n")
        shell.stdin.flush()
        wait_for(lambda: (p := process(reader, shell.pid)) is not None and p.comm == "sleep")
        wait_for(lambda: [c.state for c in reader.scan().children.get(parent.pid, [])] == ["Z"])
        assert equals_a_scan_from_scratch(reader)
    finally:
        stop(shell)
        stop(parent)
    # Both gone; the zombie reparented to init and reaped there, with no event of its own.
    wait_for(lambda: not {shell.pid, parent.pid} & {s.pid for s in reader.scan().table})
    assert not reader.scan().children.get(parent.pid)
    assert equals_a_scan_from_scratch(reader)
    assert host.changes.rereads("processes", "start") == 1
    assert host.changes.lost_count("processes") == 0


def test_lost_events_mean_a_full_scan_counted(root: None) -> None:
    reader = ProcfsReader()
    # The smallest buffer the kernel allows (~4.6 KiB): a few events fill it.
    reader.follow(ProcEvents.open(receive_buffer=1, force=False))
    host = _host(reader)
    try:
        reader.scan()
        for _ in range(40):  # each a fork, an exec and an exit
            subprocess.run(["sleep", "0"], check=True)
        new = subprocess.Popen(["sleep", "60"])
        try:
            assert process(reader, new.pid) is not None
            assert host.changes.lost_count("processes") == 1
            assert host.changes.rereads("processes", "lost_events") == 1
            assert equals_a_scan_from_scratch(reader)
        finally:
            stop(new)
    finally:
        reader.close()


def test_without_net_admin_every_scan_reads_everything_logged_once(root: None) -> None:
    script = (
        "import logging; logging.basicConfig(); "
        "from exporter.readers.procfs import ProcfsReader; r = ProcfsReader(); "
        "a, b = r.scan(), r.scan(); print(r.follows_events, len(b.table) > 1)"
    )
    python = (sys.executable, "-c", script)
    run = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", *python],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == ["False", "True"]
    assert run.stderr.count("every /proc scan reads every process") == 1
    assert "CAP_NET_ADMIN" in run.stderr


@pytest.fixture
def mine(engine: Any) -> Iterator[Containers]:
    made = Containers(engine)
    made.prefix = f"dhe-pr-{uuid.uuid4().hex[:6]}"
    yield made
    made.cleanup()


def _facts(source: ProcessTable, host: Host) -> ProcessFacts:
    return source.sample(host.tick())[0]


def test_containers_started_and_stopped_are_followed(
    reader: ProcfsReader, mine: Containers
) -> None:
    host, source = _host(reader), ProcessTable(0.1, judge_shims=False)
    scratch_reader = ProcfsReader(follow_events=False)
    scratch_host, scratch_source = _host(scratch_reader), ProcessTable(0.1, judge_shims=False)
    _facts(source, host)
    one = mine.run("one", "sleep 600 & sleep 600")
    two = mine.run("two")

    def shim_of(container: Any) -> Any:
        return next((s for s in _facts(source, host).shims if s.container_id == container.id), None)

    # busybox sh execs its last command: PID 1 is sleep, with one child.
    wait_for(lambda: (s := shim_of(one)) is not None and s.processes == 2)
    assert shim_of(one).pid1 == one.attrs["State"]["Pid"]
    assert shim_of(two).pid1 == two.attrs["State"]["Pid"]
    unchanged = _facts(source, host)
    for _ in range(ATTEMPTS):
        if _facts(source, host) == _facts(scratch_source, scratch_host):
            break
    else:
        raise AssertionError("the followed table never equalled a scan from scratch")
    two.stop(timeout=1)
    wait_for(lambda: shim_of(two) is None)
    assert shim_of(one) is not None
    assert _facts(source, host) is not unchanged
    assert host.changes.lost_count("processes") == 0
