"""The proc connector's events, as recorded from the real kernel (tests/record_proc_events.py),
and the process table following them over a procfs tree built in a temporary directory: every
scan reads only what the events say changed, and ends equal to a scan from scratch."""

from __future__ import annotations

import json
import random
import shutil
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors.processes import COLLECTOR
from exporter.collectors.processes.facts import NAME, ProcessCounters, ProcessFacts
from exporter.collectors.processes.source import ProcessTable
from exporter.metrics import Renderer, render
from exporter.readers.docker_api import DockerReader
from exporter.readers.inventory import DockerInventory
from exporter.readers.proc_events import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    Changes,
    ProcEvents,
    apply,
    parse_events,
)
from exporter.readers.procfs import ProcessScan, ProcfsReader
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from exporter.tick import Host
from tests.helpers import parse, select
from tests.unit.test_procfs_reader import SHIM_V2, FakeProc, container_ns
from tests.unit.test_rule_counters import counting

SCENE = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "proc_events" / "scene.json").read_text()
)
ME, SHELL, CHILD = SCENE["recorder"], SCENE["shell"], SCENE["child"]


def recorded(phase: str) -> list[bytes]:
    return [bytes.fromhex(text) for text in SCENE["phases"][phase]]


def folded(phase: str) -> Changes:
    changes = Changes()
    for data in recorded(phase):
        for event in parse_events(data):
            apply(changes, event)
    return changes


def event(what: int, pid: int) -> bytes:
    """One exec or exit message as the kernel frames it (a process's own, pid = tgid)."""
    body = struct.pack("=IIQii16x", what, 0, 0, pid, pid)
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(body), 0)
    return struct.pack("=IHHII", 16 + len(cn) + len(body), 3, 0, 0, 0) + cn + body


def test_recorded_events_say_which_processes_changed() -> None:
    spawn = folded("spawn")
    # The shell forked and exec'd sh then sleep; its child forked and exec'd sleep.
    assert (spawn.touched, spawn.execed, spawn.exited) == ({SHELL, CHILD}, {SHELL, CHILD}, set())
    assert folded("zombie").exited == {CHILD}
    assert folded("exit").exited == {SHELL}
    # The recorder renamed itself: its comm, so its stat, changed.
    comm = folded("comm")
    assert (comm.touched, comm.exited) == ({ME}, set())
    # A thread was born, renamed itself and ended: no process's stat changed, but a thread's
    # exit may be its group's end, so its process is looked at again.
    thread = folded("thread")
    assert (thread.touched, thread.execed, thread.exited) == (set(), set(), {ME})
    assert not any(phase.lost for phase in (spawn, comm, thread))


def test_truncated_and_foreign_messages_are_no_events() -> None:
    (exit_message,) = recorded("exit")
    assert [e.tgid for e in parse_events(exit_message)] == [SHELL]
    assert list(parse_events(exit_message[:-8])) == []  # shorter than its header says
    foreign = exit_message[:16] + struct.pack("=I", 7) + exit_message[20:]  # another cn idx
    assert list(parse_events(foreign)) == []
    assert list(parse_events(b"")) == []


class Feed:
    """Recorded datagrams handed to the reader's ProcEvents through a datagram socket pair."""

    def __init__(self) -> None:
        self._out, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        theirs.setblocking(False)
        self.events = ProcEvents(theirs)

    def send(self, *datagrams: bytes) -> None:
        for data in datagrams:
            self._out.send(data)

    def close(self) -> None:
        self._out.close()
        self.events.close()


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path)
    fake.process(1, "systemd", 0, cmdline="/sbin/init\0")
    fake.process(2, "kthreadd", 0)
    return fake


@pytest.fixture
def feed() -> Iterator[Feed]:
    fed = Feed()
    yield fed
    fed.close()


def _key(scan: ProcessScan) -> list[tuple[int, int, str, str, int]]:
    return [(s.pid, s.ppid, s.comm, s.state, s.start_ticks) for s in scan.table]


def restat(proc: FakeProc, pid: int, comm: str, ppid: int, *, start: int, state: str = "S") -> None:
    rest = " ".join(["0"] * 17)
    (proc.root / str(pid) / "stat").write_text(
        f"{pid} ({comm}) {state} {ppid} {rest} {start} 0 0\n"
    )


def gone(proc: FakeProc, pid: int) -> None:
    shutil.rmtree(proc.root / str(pid))


def from_scratch(proc: FakeProc) -> ProcessScan:
    return ProcfsReader(proc.root, follow_events=False).scan()


def test_the_table_follows_the_recorded_events_reading_only_what_changed(
    proc: FakeProc, feed: Feed
) -> None:
    recorder = proc.process(ME, "python3", 1, start=1000)
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    reasons: list[str] = []
    reader.on_reread = reasons.append
    first = reader.scan()
    assert reasons == ["start"]

    def reads() -> int:
        before = reader.stats_reads
        scan = reader.scan()
        assert _key(scan) == _key(from_scratch(proc))
        return reader.stats_reads - before

    assert reads() == 0 and reader.scan() is first  # nothing happened: nothing read
    feed.send(*recorded("thread"))
    assert reads() == 1 and reader.scan() is first  # the recorder again, unchanged
    (recorder / "stat").write_text((recorder / "stat").read_text().replace("python3", "dhe-pr"))
    feed.send(*recorded("comm"))
    assert reads() == 1
    assert reader.scan().table[-1].comm == "dhe-pr"

    proc.process(SHELL, "sleep", ME, start=2000)
    proc.process(CHILD, "sleep", SHELL, start=2001)
    feed.send(*recorded("spawn"))
    assert reads() == 2
    assert [c.pid for c in reader.scan().children[SHELL]] == [CHILD]

    restat(proc, CHILD, "sleep", SHELL, start=2001, state="Z")  # exited, never reaped
    feed.send(*recorded("zombie"))
    assert reads() == 1
    zombie_scan = reader.scan()
    assert reads() == 1  # nothing says a zombie was reaped: it is looked at every scan
    assert reader.scan() is zombie_scan

    # The shell killed and reaped, its zombie child reparented to init and reaped there: one
    # event, the shell's exit.
    gone(proc, SHELL)
    gone(proc, CHILD)
    feed.send(*recorded("exit"))
    assert reads() == 2
    assert {SHELL, CHILD} & {s.pid for s in reader.scan().table} == set()
    assert reasons == ["start"]


def test_an_exited_processs_children_are_read_again(proc: FakeProc, feed: Feed) -> None:
    proc.process(SHELL, "sh", 1, start=2000)
    proc.process(CHILD, "sleep", SHELL, start=2001)
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    reader.scan()
    # The shell is gone and reaped, its child reparented to init: one event, the shell's exit.
    gone(proc, SHELL)
    restat(proc, CHILD, "sleep", 1, start=2001)
    feed.send(*recorded("exit"))
    scan = reader.scan()
    assert _key(scan) == _key(from_scratch(proc))
    assert [c.pid for c in scan.children[1]][-1] == CHILD


def test_a_full_scan_every_resync_interval(proc: FakeProc, feed: Feed) -> None:
    now = [0.0]
    reader = ProcfsReader(proc.root, follow_events=False, now=lambda: now[0])
    reader.follow(feed.events)
    reasons: list[str] = []
    reader.on_reread = reasons.append
    first = reader.scan()
    now[0] = reader.resync_interval - 1
    assert reader.scan() is first and reasons == ["start"]
    now[0] = reader.resync_interval
    assert reader.scan() is first  # read in full, found unchanged: the same object
    # A process no event named (one that became visible: /proc remounted without hidepid) is
    # found by the listing at the next scan.
    stat = proc.process(4242, "sleep", 1, start=4242) / "stat"
    assert "sleep" in {s.comm for s in reader.scan().table}
    # What neither an event nor the listing says (a rename whose event was missed) is found by
    # the safety net.
    stat.write_text(stat.read_text().replace("(sleep)", "(renamed)"))
    assert "renamed" not in {s.comm for s in reader.scan().table}
    now[0] = 2 * reader.resync_interval
    assert "renamed" in {s.comm for s in reader.scan().table}
    assert reasons == ["start", "resync", "resync"]


def test_a_confirming_scan_follows_the_events_without_listing_proc(
    proc: FakeProc, feed: Feed
) -> None:
    """A second look within a run (collectors.confirm) trusts the events since the tick's scan,
    which listed /proc: what only a listing finds waits for the next tick's scan."""
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    first = reader.scan()
    listed: list[int] = []
    pids = reader.pids

    def counting() -> list[str]:
        listed.append(1)
        return pids()

    reader.pids = counting  # type: ignore[method-assign]
    proc.process(SHELL, "sleep", ME, start=2000)
    proc.process(CHILD, "sleep", SHELL, start=2001)
    feed.send(*recorded("spawn"))
    confirming = reader.scan(confirming=True)
    assert listed == [] and _key(confirming) == _key(from_scratch(proc))
    assert reader.scan(confirming=True) is confirming  # nothing since: the same object
    # A process no event named: not seen by a confirming look, found by the next listing.
    proc.process(4242, "sleep", 1, start=4242)
    assert 4242 not in {s.pid for s in reader.scan(confirming=True).table}
    assert 4242 in {s.pid for s in reader.scan().table} and listed == [1]
    assert first is not confirming


def _whole(scan: ProcessScan) -> tuple[object, ...]:
    """Everything a scan says: the table, who is whose child, the shims and the daemons."""
    return (
        _key(scan),
        {ppid: [c.pid for c in kids] for ppid, kids in scan.children.items()},
        [(stat.pid, command.container_id) for stat, command in scan.shims],
        [(daemon.name, daemon.pid) for daemon in scan.daemons],
    )


# What a spawned process is: its name and argv (a daemon, a shim, a daemon's child before exec).
_KINDS = (
    ("sleep", "sleep\0600\0"),
    ("dockerd", "/usr/bin/dockerd\0-H\0fd://\0"),
    ("containerd", "/usr/bin/containerd\0"),
    ("containerd-shim", SHIM_V2),
    ("runc:[2:INIT]", "runc\0init\0"),
)


@pytest.mark.parametrize("seed", range(6))
def test_a_table_the_events_changed_says_what_a_scan_from_scratch_says(
    proc: FakeProc, feed: Feed, seed: int
) -> None:
    """Processes spawned (under daemons, shims and each other), exec'd, turned zombie and gone,
    their children reparented: after each change the scan that followed the events (the last
    scan patched, not built again) has the table, children, shims and daemons of a scan from
    scratch."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable sequence of changes, not a secret
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    reader.scan()
    built = reader._build
    builds: list[int] = []

    def counted(*args: Any) -> ProcessScan:
        builds.append(1)
        return built(*args)

    reader._build = counted  # type: ignore[method-assign,assignment]
    alive: dict[int, int] = {1: 0}  # pid -> parent
    next_pid = 100
    for step in range(60):
        what = rng.random()
        pids = sorted(alive)
        if what < 0.45 or len(alive) < 4:
            comm, argv = rng.choice(_KINDS)
            parent = rng.choice(pids)
            if rng.random() < 0.3 and parent != 1:  # a daemon's fork, not yet exec'd
                comm = _proc_comm(proc, parent)
                argv = (proc.root / str(parent) / "cmdline").read_text()
            proc.process(next_pid, comm, parent, start=next_pid, cmdline=argv.format(id=f"c{step}"))
            alive[next_pid] = parent
            next_pid += 1
        elif what < 0.65:
            pid = rng.choice(pids[1:])
            comm, argv = rng.choice(_KINDS)
            restat(proc, pid, comm, alive[pid], start=pid)
            (proc.root / str(pid) / "cmdline").write_text(argv.format(id=f"x{step}"))
            feed.send(event(PROC_EVENT_EXEC, pid))
        elif what < 0.75:
            pid = rng.choice(pids[1:])
            restat(proc, pid, _proc_comm(proc, pid), alive[pid], start=pid, state="Z")
            feed.send(event(PROC_EVENT_EXIT, pid))
        else:
            pid = rng.choice(pids[1:])
            gone(proc, pid)
            del alive[pid]
            for child, parent in list(alive.items()):
                if parent == pid:  # reparented to init without an event of its own
                    alive[child] = 1
                    restat(proc, child, _proc_comm(proc, child), 1, start=child)
            feed.send(event(PROC_EVENT_EXIT, pid))
        assert _whole(reader.scan()) == _whole(from_scratch(proc)), f"seed {seed}, step {step}"
    assert builds == []  # every scan after the first patched the last one


def _proc_comm(proc: FakeProc, pid: int) -> str:
    text = (proc.root / str(pid) / "stat").read_text()
    return text[text.index("(") + 1 : text.rindex(")")]


def test_an_exec_reads_argv_again_even_under_the_same_name(proc: FakeProc, feed: Feed) -> None:
    shim = proc.process(SHELL, "containerd-shim", 1, start=2000, cmdline=SHIM_V2.format(id="a"))
    proc.process(CHILD, "sleep", SHELL, start=2001, nspid=(1,), ns=container_ns(4026532000))
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    assert [c.container_id for _, c in reader.scan().shims] == ["a"]
    (shim / "cmdline").write_text(SHIM_V2.format(id="b"))
    feed.send(event(PROC_EVENT_EXEC, SHELL))
    assert [c.container_id for _, c in reader.scan().shims] == ["b"]


def test_the_processes_facts_are_the_same_object_until_something_changes(
    proc: FakeProc, feed: Feed
) -> None:
    proc.process(SHELL, "containerd-shim", 1, start=2000, cmdline=SHIM_V2.format(id="c" * 64))
    proc.process(CHILD, "sleep", SHELL, start=2001, nspid=(1,), ns=container_ns(4026532000))
    proc.process(CHILD + 1, "sh", CHILD, start=2002, nspid=(2,), ns=container_ns(4026532000))
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    host = Host(reader, DockerInventory(DockerReader("unix:///nowhere", 0.1)))
    source = ProcessTable(0.1, judge_shims=False)
    first, _ = source.sample(host.tick(1.0))
    assert source.sample(host.tick(2.0))[0] is first
    restat(proc, CHILD + 1, "sh", CHILD, start=2002, state="Z")
    feed.send(event(PROC_EVENT_EXIT, CHILD + 1))
    changed, _ = source.sample(host.tick(3.0))
    assert changed is not first
    assert (changed.shims[0].processes, changed.shims[0].zombies) == (2, 1)
    assert source.sample(host.tick(4.0))[0] is changed
    assert host.changes.rereads("processes", "start") == 1


def test_a_process_off_every_shim_moves_the_count_and_reruns_only_its_writer(
    proc: FakeProc, feed: Feed
) -> None:
    """Issue 24: runc and a shim's helpers come and go for seconds after a container starts or
    stops. Only the count moves, so only its writer runs again: not the shims' (5000 series at
    250 containers), and the exposition is what a from-scratch render of the same reading is."""
    proc.process(SHELL, "containerd-shim", 1, start=2000, cmdline=SHIM_V2.format(id="c" * 64))
    proc.process(CHILD, "sleep", SHELL, start=2001, nspid=(1,), ns=container_ns(4026532000))
    reader = ProcfsReader(proc.root, follow_events=False)
    reader.follow(feed.events)
    host = Host(reader, DockerInventory(DockerReader("unix:///nowhere", 0.1)))
    source = ProcessTable(0.1, judge_shims=False)
    runs: Counter[str] = Counter()
    writers = COLLECTOR.writers(Settings())
    renderer = Renderer(counting(list(zip(("shims", "count"), writers, strict=True)), runs))
    facts, counted = source.sample(host.tick(1.0))
    renderer.render(_state(facts, counted))
    helper = CHILD + 100
    proc.process(helper, "runc", 1, start=2100)
    feed.send(event(PROC_EVENT_EXEC, helper))
    again, more = source.sample(host.tick(2.0))
    assert again is facts
    assert more.processes_scanned == counted.processes_scanned + 1
    text = renderer.render(_state(again, more))
    assert runs == {"shims": 1, "count": 2}
    assert text == render(_state(again, more), [COLLECTOR.write_all(Settings())])
    (count,) = select(parse(text), "docker_host_procfs_processes")
    assert count.value == more.processes_scanned
    # Its exit as well; then a shim's process that ends runs the shims' writer again.
    feed.send(event(PROC_EVENT_EXIT, helper))
    shutil.rmtree(proc.root / str(helper))
    assert source.sample(host.tick(3.0)) == (facts, counted)
    restat(proc, CHILD, "sleep", SHELL, start=2001, state="Z")
    feed.send(event(PROC_EVENT_EXIT, CHILD))
    renderer.render(_state(*source.sample(host.tick(4.0))))
    assert runs == {"shims": 2, "count": 3}


def _state(facts: ProcessFacts, counted: ProcessCounters) -> Snapshot:
    return Snapshot().with_state(CollectorState(NAME, True, 0.01, 1.0, facts, counters=counted))
