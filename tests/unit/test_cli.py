"""Flags, durations and addresses, parsed as the command line would."""

from __future__ import annotations

import pytest

from exporter.cli import build_parser, settings_from
from exporter.collectors import all_collectors
from exporter.collectors.conntrack.options import MAX_ENTRIES
from exporter.collectors.containers.options import LABELS
from exporter.collectors.layers.options import TOP_K
from exporter.collectors.ports.options import LISTENER_REFRESH
from exporter.collectors.processes.options import RESYNC_INTERVAL
from exporter.readers.docker_api import DEFAULT_DOCKER_HOST, resolve_docker_host
from exporter.settings import DEFAULT_LISTEN_ADDRESS, Settings, label_name, parse_duration
from exporter.web import parse_listen_address


def parse(*argv: str) -> Settings:
    collectors = all_collectors()
    return settings_from(build_parser(collectors).parse_args(list(argv)), collectors)


def test_defaults_enable_every_collector() -> None:
    settings = parse()
    assert settings.collectors == (
        "containers", "processes", "network", "nat", "firewall", "daemon", "layers", "conntrack",
        "ports",
    )  # fmt: skip
    assert settings.listen_address == DEFAULT_LISTEN_ADDRESS
    assert 9100 <= int(DEFAULT_LISTEN_ADDRESS.lstrip(":")) <= 9999


def test_collector_flags_and_intervals() -> None:
    settings = parse(
        "--no-collector.containers",
        "--collector.processes.interval=1m",
        "--sample.interval=30s",
        "--path.procfs=/host/proc",
    )
    assert settings.collectors == (
        "processes", "network", "nat", "firewall", "daemon", "layers", "conntrack", "ports"
    )  # fmt: skip
    assert settings.interval("processes") == 60
    assert settings.interval("other") == 30
    assert settings.procfs == "/host/proc"


def test_layers_has_a_slow_interval_of_its_own() -> None:
    assert parse().interval("layers") == 120
    assert parse("--sample.interval=5s").interval("layers") == 120
    assert parse("--collector.layers.interval=10m").interval("layers") == 600
    assert parse("--collector.layers.top-k=7")[TOP_K] == 7


def test_conntrack_has_a_slow_interval_and_a_cap() -> None:
    assert parse().interval("conntrack") == 60
    assert parse()[MAX_ENTRIES] == 250000
    assert parse("--collector.conntrack.max-entries=10")[MAX_ENTRIES] == 10
    with pytest.raises(SystemExit):
        parse("--collector.conntrack.max-entries=0")


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        ("--collector.layers.top-k=-1", "must not be negative, not -1"),
        ("--collector.layers.top-k=many", "not a whole number: 'many'"),
        ("--collector.conntrack.max-entries=0", "must be at least 1, not 0"),
        ("--collector.ports.listener-refresh=0s", "duration must be positive"),
        ("--collector.processes.resync-interval=soon", "not a duration"),
    ],
)
def test_a_collectors_bad_option_is_a_usage_error_naming_the_flag(
    flag: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(flag)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag.split('=', maxsplit=1)[0]}:" in err
    assert complaint in err


def test_options_are_typed_keys_with_their_own_defaults() -> None:
    # No registry: a Settings built by hand, no collector imported for it, has the defaults.
    assert Settings()[TOP_K] == 50
    assert Settings()[LISTENER_REFRESH] == 240.0
    assert parse("--collector.ports.listener-refresh=90s")[LISTENER_REFRESH] == 90.0
    # Every collector's option is on the command line, under its collector's name.
    flags = {f"--collector.{c.name}.{o.name}" for c in all_collectors() for o in c.options}
    assert flags == {
        "--collector.containers.labels",
        "--collector.containers.resync-interval",
        "--collector.daemon.resync-interval",
        "--collector.layers.top-k",
        "--collector.conntrack.max-entries",
        "--collector.network.resync-interval",
        "--collector.ports.listener-refresh",
        "--collector.processes.resync-interval",
    }
    assert parse("--collector.processes.resync-interval=2m")[RESYNC_INTERVAL] == 120.0


def test_settings_built_by_hand_are_checked_too() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Settings(options={TOP_K: -1})
    with pytest.raises(TypeError, match="top-k: expected int"):
        Settings(options={TOP_K: "7"})


def test_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("--sample.interval=soon")
    assert exc.value.code == 2
    assert "not a duration" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("2.5", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-1s", "5x", "s", "1m 2s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_docker_host_precedence() -> None:
    assert resolve_docker_host("tcp://a:2375", {"DOCKER_HOST": "unix:///b"}) == "tcp://a:2375"
    assert resolve_docker_host(None, {"DOCKER_HOST": "unix:///b"}) == "unix:///b"
    assert resolve_docker_host(None, {}) == DEFAULT_DOCKER_HOST


@pytest.mark.parametrize(
    ("address", "parsed"),
    [(":9747", ("", 9747)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9", ("::1", 9))],
)
def test_listen_addresses(address: str, parsed: tuple[str, int]) -> None:
    assert parse_listen_address(address) == parsed


@pytest.mark.parametrize("address", ["9747", "host:", "host:99999", "host:http"])
def test_bad_listen_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="listen-address"):
        parse_listen_address(address)


def test_no_docker_label_is_exported_unless_allowlisted() -> None:
    assert parse()[LABELS] == ()
    given = parse("--collector.containers.labels=team, com.example.tier,team")
    assert given[LABELS] == ("team", "com.example.tier")
    assert [label_name(k) for k in given[LABELS]] == [
        "label_team",
        "label_com_example_tier",
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("*", "no wildcards"), ("app.*", "no wildcards"), ("a.b,a-b", "would both be exported")],
)
def test_bad_label_allowlists_are_usage_errors(
    text: str, complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(f"--collector.containers.labels={text}")
    assert exc.value.code == 2
    assert complaint in capsys.readouterr().err
