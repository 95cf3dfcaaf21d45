"""The /proc reader on procfs trees built in a temporary directory (no root, no engine)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

from exporter.collectors.processes.facts import ProcessFacts
from exporter.collectors.processes.source import ProcessTable
from exporter.readers.docker_api import DockerReader
from exporter.readers.inventory import DockerInventory
from exporter.readers.procfs import (
    ProcfsError,
    ProcfsReader,
    ProcStat,
    choose_pid1,
    hidepid_option,
    parse_shim_cmdline,
    parse_stat,
)
from exporter.tick import Host

HOST_NS = {
    "cgroup": 4026531835,
    "ipc": 4026531839,
    "mnt": 4026531840,
    "net": 4026531992,
    "pid": 4026531836,
    "user": 4026531837,
    "uts": 4026531838,
}
BOOT = 1_700_000_000
SHIM_V2 = "/usr/bin/containerd-shim-runc-v2\0-namespace\0moby\0-id\0{id}\0-address\0/run/c.sock\0"


class FakeProc:
    """Writes the files the reader reads, in the kernel's formats."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "stat").write_text(f"cpu  1 2 3\nbtime {BOOT}\nprocesses 9\n")

    def process(
        self,
        pid: int,
        comm: str,
        ppid: int,
        *,
        state: str = "S",
        start: int = 100,
        cmdline: str = "",
        nspid: tuple[int, ...] = (),
        ns: dict[str, int] | None = None,
    ) -> Path:
        d = self.root / str(pid)
        (d / "ns").mkdir(parents=True)
        rest = " ".join(["0"] * 17)
        (d / "stat").write_text(f"{pid} ({comm}) {state} {ppid} {rest} {start} 0 0\n")
        (d / "cmdline").write_text(cmdline)
        (d / "status").write_text(
            f"Name:\t{comm}\nNSpid:\t{pid}\t" + "\t".join(map(str, nspid)) + "\n"
        )
        for kind, inode in (ns if ns is not None else HOST_NS).items():
            os.symlink(f"{kind}:[{inode}]", d / "ns" / kind)
        return d


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path)
    fake.process(1, "systemd", 0, cmdline="/sbin/init\0")
    fake.process(2, "kthreadd", 0)
    fake.process(50, "dockerd", 1, start=500, cmdline="/usr/sbin/dockerd\0-H\0fd://\0")
    fake.process(60, "containerd", 1, start=600, cmdline="/usr/bin/containerd\0")
    return fake


def container_ns(base: int) -> dict[str, int]:
    return {**HOST_NS, **{k: base + i for i, k in enumerate(("ipc", "mnt", "net", "pid", "uts"))}}


def test_parse_stat_survives_hostile_comm() -> None:
    stat = parse_stat("42 (a) b (c)) Z 7 " + " ".join(["0"] * 17) + " 12345 0\n")
    assert stat == ProcStat(pid=42, comm="a) b (c)", state="Z", ppid=7, start_ticks=12345)


def test_shim_cmdline_v2_and_v1() -> None:
    v2 = parse_shim_cmdline(
        (
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "moby",
            "-id",
            "abc",
            "-address",
            "/run/x",
        )
    )
    assert v2 is not None and (v2.container_id, v2.runtime_namespace) == ("abc", "moby")
    v1 = parse_shim_cmdline(
        (
            "docker-containerd-shim",
            "-namespace",
            "moby",
            "-workdir",
            "/var/lib/docker/containerd/daemon/io.containerd.runtime.v1.linux/moby/def",
            "-address",
            "/run/x",
        )
    )
    assert v1 is not None and v1.container_id == "def"
    assert parse_shim_cmdline(("/usr/bin/containerd", "--config", "x")) is None
    assert parse_shim_cmdline(()) is None


def test_pid1_is_the_child_that_is_1_in_its_namespace_else_the_oldest() -> None:
    init = ProcStat(10, "sleep", "S", 9, start_ticks=200)
    exec_session = ProcStat(11, "sh", "S", 9, start_ticks=100)  # older pid reuse is possible
    assert choose_pid1([exec_session, init], {10: (10, 1), 11: (11, 7)}) == 10
    assert choose_pid1([init, exec_session], {10: (10,), 11: (11,)}) == 11
    assert choose_pid1([], {}) is None


def test_reads_shims_containers_daemons_and_counts(proc: FakeProc) -> None:
    cid = "a" * 64
    proc.process(100, "containerd-shim", 1, start=1000, cmdline=SHIM_V2.format(id=cid))
    proc.process(101, "sleep", 100, start=1001, nspid=(1,), ns=container_ns(4026532000))
    proc.process(102, "sh", 101, start=1002, nspid=(7,), ns=container_ns(4026532000))
    proc.process(
        103, "defunct", 102, state="Z", start=1003, nspid=(8,), ns=container_ns(4026532000)
    )
    host, source = _source(ProcfsReader(proc.root))
    facts, counted = source.sample(host.tick())
    assert [d.name for d in facts.daemons] == ["containerd", "dockerd"]
    assert facts.daemons[1].start_time == pytest.approx(BOOT + 500 / os.sysconf("SC_CLK_TCK"))
    (shim,) = facts.shims
    assert (shim.container_id, shim.runtime_namespace, shim.pid1) == (cid, "moby", 101)
    assert (shim.processes, shim.zombies) == (3, 1)
    assert {link.kind: link.inode for link in shim.namespaces}["net"] == 4026532002
    assert counted.processes_scanned == 8


def test_vanished_processes_are_skipped(proc: FakeProc) -> None:
    cid = "b" * 64
    proc.process(100, "containerd-shim", 1, cmdline=SHIM_V2.format(id=cid))
    gone = proc.process(101, "sleep", 100, nspid=(1,), ns=container_ns(4026532100))
    (gone / "stat").unlink()  # listed, then gone before it was read
    (proc.root / "777").mkdir()  # a pid directory with nothing in it any more
    facts = read(ProcfsReader(proc.root))
    (shim,) = facts.shims
    assert shim.pid1 is None
    assert shim.processes == 0


def test_a_reused_pid1_is_not_trusted(proc: FakeProc, monkeypatch: pytest.MonkeyPatch) -> None:
    proc.process(100, "containerd-shim", 1, cmdline=SHIM_V2.format(id="c" * 64))
    proc.process(101, "sleep", 100, start=1001, nspid=(1,), ns=container_ns(4026532200))
    reader = ProcfsReader(proc.root)
    original = reader.namespaces

    def namespaces_then_reuse(pid: int) -> object:
        result = original(pid)
        if pid == 101:  # the process exits and its pid is taken by a newer one meanwhile
            stat = proc.root / "101" / "stat"
            stat.write_text(stat.read_text().replace(" 1001 ", " 9999 "))
        return result

    monkeypatch.setattr(reader, "namespaces", namespaces_then_reuse)
    (shim,) = read(reader).shims
    assert shim.pid1 is None
    assert shim.namespaces == ()


def refuse(monkeypatch: pytest.MonkeyPatch, *pids: int) -> None:
    """EACCES on /proc/PID/ns/* for these pids, as without CAP_SYS_PTRACE or for a
    non-dumpable init."""
    real = os.readlink

    def readlink(path: os.PathLike[str] | str) -> str:
        if Path(path).parent.parent.name in {str(p) for p in pids}:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "readlink", readlink)


def test_refused_namespaces_are_reported_and_logged_once(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    proc.process(100, "containerd-shim", 1, cmdline=SHIM_V2.format(id="d" * 64))
    proc.process(101, "sleep", 100, nspid=(1,), ns=container_ns(4026532300))
    refuse(monkeypatch, 101)
    reader = ProcfsReader(proc.root)
    for _ in range(3):
        (shim,) = read(reader).shims
    assert shim.pid1 == 101
    assert set(shim.unreadable_namespaces) == set(HOST_NS)
    assert shim.namespaces == ()
    warnings = [r for r in caplog.records if "CAP_SYS_PTRACE" in r.getMessage()]
    assert len(warnings) == 1


def test_host_namespaces_fall_back_to_kthreadd(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    for link in (proc.root / "2" / "ns").iterdir():
        link.unlink()
    for kind, inode in HOST_NS.items():
        os.symlink(f"{kind}:[{inode + 7}]", proc.root / "2" / "ns" / kind)
    refuse(monkeypatch, 1)
    facts = read(ProcfsReader(proc.root))
    assert {link.kind: link.inode for link in facts.host_namespaces} == {
        kind: inode + 7 for kind, inode in HOST_NS.items()
    }


def test_host_namespaces_do_not_fall_back_to_an_impostor_pid2(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Inside a PID namespace, PID 2 is an ordinary process, not the kernel's kthreadd.
    (proc.root / "2" / "stat").write_text(
        (proc.root / "2" / "stat").read_text().replace("(kthreadd)", "(bash)")
    )
    refuse(monkeypatch, 1)
    assert read(ProcfsReader(proc.root)).host_namespaces == ()


def test_not_a_procfs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProcfsError, match=r"is --path\.procfs a procfs"):
        read(ProcfsReader(tmp_path))


def test_cached_argv_follows_an_exec_between_fork_and_read(proc: FakeProc) -> None:
    # containerd has forked a child that has not exec'd the shim yet: it looks like containerd,
    # and is not a second one; nor is dockerd's child on its way to iptables.
    child = proc.process(100, "containerd", 60, start=700, cmdline="/usr/bin/containerd\0")
    proc.process(101, "dockerd", 50, start=700, cmdline="/usr/sbin/dockerd\0-H\0fd://\0")
    reader = ProcfsReader(proc.root)
    first = read(reader).daemons
    assert [(d.name, d.pid) for d in first] == [("containerd", 60), ("dockerd", 50)]
    # Same pid, same start time: the exec changed comm and argv together.
    (child / "stat").write_text(
        (child / "stat").read_text().replace("(containerd)", "(containerd-shim)")
    )
    (child / "cmdline").write_text(SHIM_V2.format(id="e" * 64))
    facts = read(reader)
    assert [s.container_id for s in facts.shims] == ["e" * 64]
    # No Engine API has ever answered: no shim is held against a container list.
    assert [s.listed for s in facts.shims] == [None]
    assert [d.name for d in facts.daemons] == ["containerd", "dockerd"]


def test_start_times_hold_while_btime_jitters_and_follow_a_clock_step(proc: FakeProc) -> None:
    # /proc/stat's btime is wall clock minus uptime, computed on each read: slewing moves it a
    # second now and then. A daemon whose start time moved would look like another daemon.
    reader = ProcfsReader(proc.root)
    before = [d.start_time for d in read(reader).daemons]
    (proc.root / "stat").write_text(f"cpu  1 2 3\nbtime {BOOT + 1}\nprocesses 9\n")
    assert [d.start_time for d in read(reader).daemons] == before
    (proc.root / "stat").write_text(f"cpu  1 2 3\nbtime {BOOT + 3600}\nprocesses 9\n")
    assert [d.start_time for d in read(reader).daemons] == [t + 3600 for t in before]


def test_a_daemons_binary_run_once_is_not_a_second_daemon(proc: FakeProc) -> None:
    # A shim publishes each task event through `containerd ... publish`; tools run
    # `dockerd --version`. Neither serves anything: "the only dockerd" stays the only one.
    proc.process(
        120,
        "containerd",
        1,
        start=700,
        cmdline="containerd\0--address\0/run/containerd/containerd.sock\0publish\0--topic\0"
        "/tasks/exit\0--namespace\0moby\0",
    )
    proc.process(121, "dockerd", 1, start=700, cmdline="dockerd\0--version\0")
    proc.process(122, "dockerd", 1, start=700, cmdline="/usr/sbin/dockerd\0--validate\0")
    assert [(d.name, d.pid) for d in read(ProcfsReader(proc.root)).daemons] == [
        ("containerd", 60),
        ("dockerd", 50),
    ]


def test_collectors_of_one_tick_share_a_scan_and_the_next_tick_takes_its_own(
    proc: FakeProc,
) -> None:
    reader = ProcfsReader(proc.root)
    host = Host(reader, DockerInventory(DockerReader("unix:///nowhere", 1.0)))
    tick = host.tick(1.0)
    first = tick.proc_scan()
    assert tick.proc_scan() is first  # processes, network, daemon and the inventory
    proc.process(70, "sleep", 1)
    # A confirming second reading asks the host's reader: a scan of its own, of now.
    assert 70 in {s.pid for s in reader.scan().table}
    assert tick.proc_scan() is first
    # The next tick, however soon, never gets the last tick's scan.
    later = host.tick(1.001).proc_scan()
    assert later is not first
    assert 70 in {s.pid for s in later.table}


def test_a_failed_scan_is_the_same_failure_for_the_whole_tick(tmp_path: Path) -> None:
    host = Host(ProcfsReader(tmp_path), DockerInventory(DockerReader("unix:///nowhere", 1.0)))
    tick = host.tick(1.0)
    with pytest.raises(ProcfsError) as one:
        tick.proc_scan()
    with pytest.raises(ProcfsError) as other:
        tick.proc_scan()
    assert str(one.value) == str(other.value)


def test_the_tick_finds_the_dockerd_serving_docker_host_again_after_a_restart(
    proc: FakeProc,
) -> None:
    socket = "unix:///run/dhe-test.sock"
    argv = f"/usr/sbin/dockerd\0-H\0{socket}\0"
    proc.process(55, "dockerd", 1, start=550, cmdline=argv)
    host = Host(ProcfsReader(proc.root), DockerInventory(DockerReader(socket, 1.0)), socket)
    found = host.tick(1.0).dockerd()
    assert found is not None
    assert (found.pid, found.argv) == (55, ("/usr/sbin/dockerd", "-H", socket))
    # Restarted under another pid: the old one is gone.
    shutil.rmtree(proc.root / "55")
    proc.process(56, "dockerd", 1, start=900, cmdline=argv)
    found = host.tick(2.0).dockerd()
    assert found is not None
    assert found.pid == 56
    # The same pid reused by a new dockerd: told apart by its start time.
    shutil.rmtree(proc.root / "56")
    proc.process(56, "dockerd", 1, start=950, cmdline=argv)
    found = host.tick(3.0).dockerd()
    assert found is not None
    assert found.process.start_time == BOOT + 950 / os.sysconf("SC_CLK_TCK")


def test_one_reading_of_dockerd_per_tick_the_one_serving_docker_host(proc: FakeProc) -> None:
    ours, theirs = "unix:///run/dhe-ours.sock", "unix:///run/dhe-theirs.sock"
    # Three dockerds (the fixture's on the default socket): the one serving --docker.host is
    # read, with its own daemon.json (read through its own root), not another's.
    for pid, sock, iptables, proxy in ((160, theirs, "true", "true"), (161, ours, "F", "")):
        flags = f"--iptables={iptables}\0" + (f"--userland-proxy={proxy}\0" if proxy else "")
        d = proc.process(pid, "dockerd", 1, cmdline=f"dockerd\0-H\0{sock}\0{flags}")
        (d / "root" / "etc" / "docker").mkdir(parents=True)
        (d / "root" / "etc" / "docker" / "daemon.json").write_text(
            '{"userland-proxy": false, "ip6tables": true}' if pid == 161 else "{}"
        )
    host = Host(ProcfsReader(proc.root), DockerInventory(DockerReader(ours, 1.0)), ours)
    tick = host.tick(1.0)
    dockerd = tick.dockerd()
    assert dockerd is not None and dockerd.pid == 161
    assert tick.dockerd() is dockerd  # daemon, nat and ports share it
    assert dockerd.boolean("iptables", default=True) == (False, "flag")  # Go's "F"
    assert dockerd.boolean("userland-proxy", default=True) == (False, "daemon.json")
    assert dockerd.boolean("ip6tables", default=False) == (True, "daemon.json")
    assert dockerd.text("firewall-backend", default="iptables") == ("iptables", "default")
    # A socket no dockerd names on its command line: neither is taken for it.
    elsewhere = Host(ProcfsReader(proc.root), host.inventory, "unix:///run/dhe-none.sock")
    assert elsewhere.tick(1.0).dockerd() is None
    # The only dockerd serves it, whatever it names (hosts may be set in daemon.json alone).
    shutil.rmtree(proc.root / "160")
    shutil.rmtree(proc.root / "50")  # the fixture's dockerd, on the default socket
    only = elsewhere.tick(2.0).dockerd()
    assert only is not None and only.pid == 161


def test_a_failed_scan_fails_the_ticks_dockerd_reading_too(tmp_path: Path) -> None:
    host = Host(ProcfsReader(tmp_path), DockerInventory(DockerReader("unix:///nowhere", 1.0)))
    with pytest.raises(ProcfsError):
        host.tick(1.0).dockerd()


def test_an_exited_shim_waiting_to_be_reaped_is_no_shim(proc: FakeProc) -> None:
    # Seen here: PID 1 reaps daemonised shims late, so they stay zombies (state Z, no argv)
    # after their container is removed; the argv cached while they ran must not revive them.
    shim = proc.process(100, "containerd-shim", 1, start=700, cmdline=SHIM_V2.format(id="f" * 64))
    reader = ProcfsReader(proc.root)
    assert [s.container_id for s in read(reader).shims] == ["f" * 64]
    (shim / "stat").write_text((shim / "stat").read_text().replace(") S ", ") Z "))
    (shim / "cmdline").write_text("")
    assert read(reader).shims == ()


def test_a_procfs_mounted_with_hidepid_is_named_as_the_reason(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        f"90 22 0:50 / {tmp_path} rw - proc proc rw,hidepid=invisible,gid=998\n"
    )
    assert hidepid_option(tmp_path, mountinfo) == "hidepid=invisible"
    assert hidepid_option("/proc", mountinfo) is None
    mountinfo.write_text(f"90 22 0:50 / {tmp_path} rw - proc proc rw,hidepid=off\n")
    assert hidepid_option(tmp_path, mountinfo) is None


def read(reader: ProcfsReader) -> ProcessFacts:
    """The processes collector's reading of this procfs, by one source per reader, as the
    exporter's one source reads run after run (no Engine API answers here)."""
    host, source = _source(reader)
    return source.sample(host.tick())[0]


@functools.cache
def _source(reader: ProcfsReader) -> tuple[Host, ProcessTable]:
    return Host(reader, DockerInventory(DockerReader("unix:///nowhere", 0.1))), ProcessTable(0.1)
