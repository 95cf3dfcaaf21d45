"""The conntrack collector's joins, series and report, on constructed facts (no root, no host)."""

from __future__ import annotations

import pytest

from exporter.collectors.conntrack.facts import HOST, NAME, ConntrackDump, ConntrackFacts, DumpRow
from exporter.collectors.conntrack.judge import attribute, top_containers, usage_ratio
from exporter.collectors.conntrack.metrics import write
from exporter.collectors.conntrack.report import conntrack_sections
from exporter.collectors.conntrack.source import ConntrackSource
from exporter.collectors.containers.facts import NAME as CONTAINERS
from exporter.metrics import Families
from exporter.readers.ctnetlink import AF_INET, ConntrackTable, DumpCounts, DumpInterrupted
from exporter.readers.docker_api import ContainerRecord, EngineFacts
from exporter.snapshot import CollectorState, Snapshot
from tests.helpers import parse, select, value

TABLE = ConntrackTable(
    entries=900,
    limit=1000,
    buckets=1024,
    stats=(("insert_failed", 2), ("drop", 1), ("early_drop", 0), ("search_restart", 0),
           ("invalid", 7)),
)  # fmt: skip
ROWS = (
    DumpRow("ipv4", "client", "server", 6, 3, 40),  # container to container: both count it
    DumpRow("ipv4", "client", None, 6, 7, 5),  # out to the world (masqueraded)
    DumpRow("ipv4", None, "server", 17, None, 3),  # in through a published port (DNAT)
    DumpRow("ipv4", "server", "server", 1, None, 1),  # to itself through its own port: once
    DumpRow("ipv4", HOST, None, 6, 3, 11),  # the host's own
    DumpRow("ipv4", "client", HOST, 6, 3, 2),  # a container to the host: the container's
    DumpRow("ipv4", None, None, 47, None, 4),  # nobody's we know (GRE)
)
FACTS = ConntrackFacts(
    table=TABLE,
    dump=ConntrackDump(("ipv4",), 66, 0, ROWS),
    containers=("client", "idle", "server"),
)


def render(facts: ConntrackFacts) -> list:  # type: ignore[type-arg]
    snapshot = Snapshot().with_state(CollectorState(NAME, True, 0.1, 1.0, facts))
    out = Families()
    write(snapshot, out)
    text = "".join(fmt.header + "".join(lines) for fmt, lines in out.lines.values())
    return parse(text)


def test_entries_go_to_each_container_they_carry_and_the_rest_to_host_or_unknown() -> None:
    containers, unattributed = attribute(FACTS)
    assert containers["client"].by_protocol == {"tcp": 47}
    assert containers["client"].tcp_states == {"established": 42, "time_wait": 5}
    assert containers["server"].by_protocol == {"tcp": 40, "udp": 3, "icmp": 1}
    assert containers["idle"].total == 0
    assert unattributed == {"host": 11, "unknown": 4}
    assert [c.name for c in top_containers(FACTS, 2)] == ["client", "server"]
    assert usage_ratio(TABLE) == 0.9


def test_series() -> None:
    samples = render(FACTS)
    assert value(samples, "docker_host_conntrack_entries") == 900
    assert value(samples, "docker_host_conntrack_entries_limit") == 1000
    assert value(samples, "docker_host_conntrack_stat_insert_failed_total") == 2
    assert value(samples, "docker_host_conntrack_stat_invalid_total") == 7
    assert value(samples, "docker_host_conntrack_dump_success") == 1
    assert value(samples, "docker_host_conntrack_dump_entries", family="ipv4") == 66
    assert value(samples, "docker_host_conntrack_attributed") == 1
    entries = "docker_host_container_conntrack_entries"
    assert value(samples, entries, container="server", protocol="udp") == 3
    # An idle container reads 0 for every protocol, and has no TCP state series.
    assert {s.labels["protocol"] for s in select(samples, entries, container="idle")} == {
        "tcp", "udp", "icmp", "other"
    }  # fmt: skip
    assert all(s.value == 0 for s in select(samples, entries, container="idle"))
    assert not select(samples, "docker_host_container_conntrack_tcp_entries", container="idle")
    tcp = "docker_host_container_conntrack_tcp_entries"
    assert value(samples, tcp, container="client", state="time_wait") == 5
    assert value(samples, "docker_host_conntrack_unattributed_entries", owner="unknown") == 4


def test_a_container_removed_since_the_dump_loses_its_series_at_the_next_container_list() -> None:
    # The dump is taken every 60 s; the container list every sample.
    listed = EngineFacts(
        containers=(
            ContainerRecord("c" * 64, "client", "img", "sha256:1", "running", "bridge", 0),
        ),
        components=(),
        api_version="1.41",
    )
    snapshot = (
        Snapshot()
        .with_state(CollectorState(NAME, True, 0.1, 1.0, FACTS))
        .with_state(CollectorState(CONTAINERS, True, 0.1, 2.0, listed))
    )
    out = Families()
    write(snapshot, out)
    samples = parse("".join(fmt.header + "".join(lines) for fmt, lines in out.lines.values()))
    entries = "docker_host_container_conntrack_entries"
    assert {s.labels["container"] for s in select(samples, entries)} == {"client"}
    assert not select(samples, "docker_host_container_conntrack_tcp_entries", container="server")


def test_no_dump_exports_the_table_and_why_only() -> None:
    refused = ConntrackFacts(
        table=TABLE, dump=None, dump_error="EPERM", missing_capabilities=("CAP_NET_ADMIN",)
    )
    samples = render(refused)
    assert value(samples, "docker_host_conntrack_dump_success") == 0
    assert value(samples, "docker_host_conntrack_entries") == 900
    assert (
        value(samples, "docker_host_privilege_missing", collector="conntrack",
              capability="CAP_NET_ADMIN") == 1
    )  # fmt: skip
    assert not select(samples, "docker_host_container_conntrack_entries")
    assert "NOT READ (EPERM)" in conntrack_sections(refused)[0]


def test_no_conntrack_module_says_so_and_nothing_else() -> None:
    samples = render(ConntrackFacts(table=None, dump=None))
    assert [(s.name, s.value) for s in samples] == [("docker_host_conntrack_available", 0)]
    assert "not loaded" in conntrack_sections(ConntrackFacts(table=None, dump=None))[0]


def test_report_names_the_top_containers() -> None:
    head, top = conntrack_sections(FACTS)
    assert "900 of 1000 entries (90.0%)" in head and "11 the host's, 4 unknown" in head
    lines = top.splitlines()
    assert lines[2].split()[:3] == ["client", "47", "47"]
    assert "idle" not in top


def test_an_interrupted_dump_is_read_again_once_then_reported_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ConntrackSource("/proc", timeout=1.0, max_entries=10)
    answers: list[DumpCounts | Exception] = [DumpInterrupted(), DumpCounts({}, 0, capped=False)]

    def count(_family: int, _owners: dict[bytes, str]) -> DumpCounts:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(source, "_count", count)
    dump, error, _ = source._dump(AF_INET, {}, TABLE)
    assert dump is not None and error is None and dump.read == 0
    answers[:] = [DumpInterrupted(), DumpInterrupted(), DumpCounts({}, 0, capped=False)]
    dump, error, _ = source._dump(AF_INET, {}, TABLE)
    assert dump is None and error is not None and "twice" in error


def test_a_capped_dump_counts_what_it_left() -> None:
    source = ConntrackSource("/proc", timeout=1.0, max_entries=10)
    source._count = lambda _f, _o: DumpCounts({(AF_INET, None, None, 6, 3): 10}, 10, True)  # type: ignore[method-assign,assignment]
    dump, _, _ = source._dump(AF_INET, {}, TABLE)
    assert dump is not None and dump.read == 10 and dump.skipped == 890
