"""daemon.json parsing, dockerd's flags and the drift verdicts, on constructed and fuzzed
input (no root, no engine)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.collectors.daemon.facts import DaemonConfigFacts
from exporter.collectors.daemon.judge import (
    config_file_valid,
    config_verdicts,
    engine_version,
    unknown_to,
)
from exporter.readers.daemon_config import parse_config, parse_flags, redact, running_subset
from exporter.readers.docker_api import DockerNetwork, docker_network
from tests.engines import Recording, api_key, recorded_engines

RECORDINGS = [Recording(p) for p in recorded_engines()]

INFO = {
    "Debug": False, "LiveRestoreEnabled": False, "Labels": ["env=prod"], "Driver": "overlay2",
    "LoggingDriver": "json-file", "CgroupDriver": "systemd", "DefaultRuntime": "runc",
    "Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}, "DockerRootDir": "/var/lib/docker",
    "ExperimentalBuild": False, "SecurityOptions": ["name=seccomp,profile=default"],
    "RegistryConfig": {
        "InsecureRegistryCIDRs": ["127.0.0.0/8", "10.0.0.0/8"],
        "IndexConfigs": {"docker.io": {"Secure": True}, "a.example:5000": {"Secure": False}},
        "Mirrors": ["https://mirror.example/"],
    },
    "HttpsProxy": "http://user:hunter2@proxy:3128", "ServerVersion": "20.10.24",
}  # fmt: skip


def facts(file: dict[str, Any], flags: tuple[str, ...] = (), **changes: Any) -> DaemonConfigFacts:
    base = DaemonConfigFacts(
        pid=1,
        start_time=100.0,
        flag_keys=flags,
        config_path="/etc/docker/daemon.json",
        config_path_explicit=False,
        file_present=True,
        file_error=None,
        file_mtime=50.0,
        file_values=tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in file.items())),
        info=json.dumps(running_subset(INFO), sort_keys=True),
        reloads=(),
        docker_error=None,
    )
    return DaemonConfigFacts(**{**base.__dict__, **changes})


def verdicts(daemon: DaemonConfigFacts) -> dict[str, str]:
    return {v.key: v.verdict for v in config_verdicts(daemon)}


def test_flags_as_dockerd_reads_them() -> None:
    keys, config_file = parse_flags((
        "/usr/sbin/dockerd", "-H", "fd://", "--insecure-registry=r:5000", "-D",
        "--storage-driver", "overlay2", "--config-file", "/srv/d.json", "--label", "a=b",
        "--live-restore", "--iptables=false",
    ))  # fmt: skip
    assert config_file == "/srv/d.json"
    assert keys == {
        "hosts": ["fd://"], "insecure-registries": ["r:5000"], "debug": ["true"],
        "storage-driver": ["overlay2"], "labels": ["a=b"], "live-restore": ["true"],
        "iptables": ["false"],
    }  # fmt: skip


def test_in_sync_reload_restart_conflict_unknown() -> None:
    daemon = facts(
        {
            "debug": False, "labels": ["env=prod"], "insecure-registries": ["a.example:5000",
            "10.0.0.0/8"], "registry-mirrors": ["https://mirror.example"],
            "exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "local",
            "live-restore": True, "storage-driver": "overlay2", "max-concurrent-downloads": 5,
            "bogus": 1,
        },
        flags=("storage-driver",),
    )  # fmt: skip
    assert verdicts(daemon) == {
        "debug": "in_sync", "labels": "in_sync", "insecure-registries": "in_sync",
        "registry-mirrors": "in_sync", "exec-opts": "in_sync", "log-driver": "restart",
        "live-restore": "reload_will_fail", "storage-driver": "conflict",
        "max-concurrent-downloads": "not_comparable", "bogus": "unknown_key",
    }  # fmt: skip
    assert not config_file_valid(daemon)


def test_reload_events_make_reload_only_keys_comparable() -> None:
    reloaded = json.dumps({"max-concurrent-downloads": "3", "shutdown-timeout": "15"})
    daemon = facts(
        {"max-concurrent-downloads": 5, "shutdown-timeout": 15}, reloads=((200.0, reloaded),)
    )
    assert verdicts(daemon) == {"max-concurrent-downloads": "reload", "shutdown-timeout": "in_sync"}


def test_missing_explicit_file_and_broken_file_are_invalid() -> None:
    assert config_file_valid(facts({}, file_present=False))
    assert not config_file_valid(facts({}, file_present=False, config_path_explicit=True))
    assert not config_file_valid(facts({}, file_error="not JSON"))
    assert config_verdicts(facts({"debug": True}, file_error="not JSON")) == ()


def test_parse_config_reasons() -> None:
    assert parse_config(b'{"debug": true}') == ({"debug": True}, None)
    assert parse_config(b"[1]")[1] == "not a JSON object but list"
    assert "not JSON" in str(parse_config(b'{"debug": tru')[1])
    assert "not UTF-8" in str(parse_config(b'{"a": "\xff"}')[1])
    assert "larger than" in str(parse_config(b" " * (2 << 20))[1])
    assert (
        "nested too deeply" in str(parse_config(b"[" * 100000)[1])
        or parse_config(b"[" * 100000)[1] is not None
    )


def test_secrets_are_redacted() -> None:
    assert redact('["https://user:hunter2@mirror.example"]') == '["https://mirror.example"]'
    assert "hunter2" not in json.dumps(running_subset(INFO))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_verdict_not_a_crash(raw: bytes) -> None:
    config, error = parse_config(raw)
    assert (config is None) != (error is None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "debug",
                "labels",
                "insecure-registries",
                "runtimes",
                "registry-mirrors",
                "exec-opts",
                "data-root",
                "x",
                "userns-remap",
                "shutdown-timeout",
            ]
        )
        | st.text(),
        json_values,
        max_size=8,
    ),
    st.lists(st.text(), max_size=6),
)
def test_any_config_and_argv_give_verdicts_not_a_crash(
    file: dict[str, Any], argv: list[str]
) -> None:
    keys, _ = parse_flags(("dockerd", *argv))
    daemon = facts(file, flags=tuple(sorted(keys)))
    assert {v.key for v in config_verdicts(daemon)} == set(file)
    config_file_valid(daemon)


# -- issue 22 item 5: drift that tells the truth ------------------------------------------------


def test_a_reload_needed_becomes_reload_will_fail_while_the_file_is_invalid() -> None:
    assert verdicts(facts({"debug": True})) == {"debug": "reload"}
    for daemon, why in (
        (facts({"debug": True, "no-such-key": 1}), "no-such-key: no dockerd version knows it"),
        (facts({"debug": True, "labels": ["x"]}, flags=("labels",)), "labels is also a"),
    ):
        found = {v.key: v for v in config_verdicts(daemon)}
        assert found["debug"].verdict == "reload_will_fail"
        assert why in found["debug"].reason
        assert found["debug"].drift is True
        assert not config_file_valid(daemon)
    # A restart-only drift stays "restart": the restart fails too, which file_valid says.
    assert verdicts(facts({"data-root": "/srv/docker", "nope": 1}))["data-root"] == "restart"


def test_keys_depend_on_the_running_engines_version() -> None:
    file = {"firewall-backend": "nftables", "cluster-store": "consul://x"}
    on_20 = {v.key: v for v in config_verdicts(facts(file))}  # INFO says 20.10.24
    assert on_20["firewall-backend"].verdict == "unknown_key"
    assert "dockerd 20.10 does not know it (Docker 29.0 and later do)" in (
        on_20["firewall-backend"].reason
    )
    assert on_20["cluster-store"].verdict == "not_comparable"
    on_29 = facts(file, info=json.dumps(running_subset({**INFO, "ServerVersion": "29.7.2"})))
    found = {v.key: v for v in config_verdicts(on_29)}
    assert found["firewall-backend"].verdict == "not_comparable"
    assert found["cluster-store"].verdict == "unknown_key"
    assert "removed in 24.0" in found["cluster-store"].reason
    # No version to go by: only keys no engine knows are unknown.
    unknown_version = facts(file, info=json.dumps(running_subset({**INFO, "ServerVersion": ""})))
    assert set(verdicts(unknown_version).values()) == {"not_comparable"}


def _bridge(subnets: tuple[str, ...], gateways: tuple[str, ...]) -> DockerNetwork:
    return DockerNetwork(
        "id", "bridge", "bridge", "docker0", subnets, False, True, True, "", False, gateways
    )


def test_restart_only_network_keys_against_the_running_default_bridge() -> None:
    bridge = _bridge(("172.20.0.0/16", "fd00:d4e::/64"), ("172.20.0.1", "fd00:d4e::1"))
    file = {"bip": "172.20.0.1/16", "fixed-cidr-v6": "fd00:d4e::/64", "mtu": 1400}
    found = {v.key: v for v in config_verdicts(facts(file), (bridge,))}
    assert {k: v.verdict for k, v in found.items()} == {
        "bip": "in_sync",
        "fixed-cidr-v6": "in_sync",
        "mtu": "not_comparable",  # not in what the collectors read
    }
    assert found["bip"].running_value == '"172.20.0.1/16"'
    moved = {"bip": "10.66.0.1/24", "fixed-cidr-v6": "fd00:beef::/64"}
    assert verdicts_with(moved, bridge) == {"bip": "restart", "fixed-cidr-v6": "restart"}
    # A range inside the running subnet (with bip6 set) is not shown: not comparable.
    assert verdicts_with({"fixed-cidr-v6": "fd00:d4e::/80"}, bridge) == {
        "fixed-cidr-v6": "not_comparable"
    }
    # No network list (the nat collector not run): not comparable, never in sync.
    assert verdicts(facts({"bip": "172.20.0.1/16"})) == {"bip": "not_comparable"}


def verdicts_with(file: dict[str, Any], bridge: DockerNetwork) -> dict[str, str]:
    return {v.key: v.verdict for v in config_verdicts(facts(file), (bridge,))}


@pytest.mark.parametrize("recording", RECORDINGS, ids=[r.name for r in RECORDINGS])
def test_each_recorded_engine_accepts_its_daemon_json(recording: Recording) -> None:
    """The recorded engine started with its daemon.json: every key known to its version, the
    network keys in sync with its recorded default bridge; and the same file on 20.10."""
    answers = {
        api_key(a["path"]): json.loads(a["body"])
        for a in recording.api()
        if api_key(a["path"]) in ("/info", "/networks")
    }
    info, networks = answers["/info"], [docker_network(n) for n in answers["/networks"]]
    file = recording.engine["daemon_json"]
    daemon = facts(file, info=json.dumps(running_subset(info), sort_keys=True))
    found = {v.key: v for v in config_verdicts(daemon, networks)}
    assert config_file_valid(daemon)
    assert found["fixed-cidr-v6"].verdict == "in_sync"
    assert "unknown_key" not in {v.verdict for v in found.values()}
    on_20 = facts(file, info=json.dumps(running_subset({**info, "ServerVersion": "20.10.24"})))
    unknown_on_20 = {v.key for v in config_verdicts(on_20, networks) if v.verdict == "unknown_key"}
    assert unknown_on_20 == ({"firewall-backend"} if "firewall-backend" in file else set())


@pytest.mark.parametrize("recording", RECORDINGS, ids=[r.name for r in RECORDINGS])
def test_the_key_table_is_each_recorded_engines_own_word(recording: Recording) -> None:
    """Which keys the version knows, by our table, against the engine's `dockerd --validate`
    (scripts/record-engine.sh asked it for each key). `proxies` only holds an object, which
    dockerd flattens before it looks for unknown keys: the probe cannot ask for it."""
    said = json.loads(recording.text("validate.json"))
    version = engine_version(recording.version)
    ours = {k for k in said["known"] + said["unknown"] if unknown_to(k, version) is not None}
    assert ours - {"proxies"} == set(said["unknown"]) - {"proxies"}
