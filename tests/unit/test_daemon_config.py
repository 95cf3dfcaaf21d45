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
    KeyVerdict,
    config_file_valid,
    config_verdicts,
    engine_version,
    unknown_to,
)
from exporter.readers.daemon_config import parse_config, parse_flags, redact, running_subset
from exporter.readers.docker_api import DockerNetwork, created_time, docker_network
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
        file_mtime=150.0,  # changed after dockerd started: a difference is a pending restart
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


def _bridge(subnets: tuple[str, ...], gateways: tuple[str, ...], **more: Any) -> DockerNetwork:
    return DockerNetwork(
        "id", "bridge", "bridge", "docker0", subnets, False, True, True, "", False, gateways,
        **more,
    )  # fmt: skip


def test_restart_only_network_keys_against_the_running_default_bridge() -> None:
    bridge = _bridge(
        ("172.20.0.0/16", "fd00:d4e::/64"),
        ("172.20.0.1", "fd00:d4e::1"),
        ip_ranges=("172.20.4.0/24", "fd00:d4e::/64"),
        mtu="1400",
    )
    file = {
        "bip": "172.20.0.1/16", "fixed-cidr": "172.20.4.0/24", "fixed-cidr-v6": "fd00:d4e::/64",
        "mtu": 1400,
    }  # fmt: skip
    found = {v.key: v for v in config_verdicts(facts(file), (bridge,))}
    assert {k: v.verdict for k, v in found.items()} == dict.fromkeys(file, "in_sync")
    assert found["bip"].running_value == '"172.20.0.1/16"'
    assert found["fixed-cidr"].running_value == '["172.20.4.0/24"]'
    assert found["mtu"].running_value == "1400"
    moved = {
        "bip": "10.66.0.1/24", "fixed-cidr": "172.20.0.0/25", "fixed-cidr-v6": "fd00:beef::/64",
        "mtu": 9000,
    }  # fmt: skip
    assert verdicts_with(moved, bridge) == dict.fromkeys(moved, "restart")
    # The file not newer than dockerd's start, yet the daemon runs otherwise: drift, which a
    # restart alone may not mend (live-restore keeps the old default bridge).
    started_with = {
        v.key: v.verdict for v in config_verdicts(facts(moved, file_mtime=50.0), (bridge,))
    }
    assert started_with == dict.fromkeys(moved, "drift")
    assert verdicts(facts({"log-driver": "local"}, file_mtime=50.0)) == {"log-driver": "drift"}
    # A reload-only key stays "reload" whatever the file's age: a SIGHUP applies it.
    assert verdicts(facts({"debug": True}, file_mtime=50.0)) == {"debug": "reload"}
    # No mtime: pending, not drift (which claims dockerd read this very file).
    assert verdicts(facts({"log-driver": "local"}, file_mtime=None)) == {"log-driver": "restart"}
    # No network list (the nat collector not run): not comparable, never in sync.
    assert verdicts(facts({"bip": "172.20.0.1/16", "mtu": 1500})) == {
        "bip": "not_comparable",
        "mtu": "not_comparable",
    }


def test_address_ranges_and_mtu_as_each_engine_shows_them() -> None:
    # No IPRange: the daemon runs no fixed-cidr, it gives addresses from the whole subnet
    # (20.10's IPv6 subnet is fixed-cidr-v6 itself, with no range).
    plain = _bridge(("172.17.0.0/16", "fd00:d4e::/64"), ())
    whole = {"fixed-cidr": "172.17.0.0/16", "fixed-cidr-v6": "fd00:d4e::/64"}
    assert verdicts_with(whole, plain) == dict.fromkeys(whole, "in_sync")
    ranged = {"fixed-cidr": "172.17.8.0/24", "fixed-cidr-v6": "fd00:d4e::/80"}
    assert verdicts_with(ranged, plain) == dict.fromkeys(ranged, "restart")
    # A family the bridge does not have, a value that is no CIDR, or of the other family:
    # nothing to hold it against.
    v4_only = _bridge(("172.17.0.0/16",), ())
    for file in (
        {"fixed-cidr-v6": "fd00:d4e::/64"},
        {"fixed-cidr": "not a cidr"},
        {"fixed-cidr": "fd00::/64"},
    ):
        assert set(verdicts_with(file, v4_only).values()) == {"not_comparable"}
    # MTU: dockerd always sets the option (default 1500); without it, or with a value that is
    # no number, the running MTU is unknown. 0 sets none: the kernel's 1500.
    assert verdicts_with({"mtu": 1500}, v4_only) == {"mtu": "not_comparable"}
    assert verdicts_with({"mtu": 1500}, _bridge((), (), mtu="junk")) == {"mtu": "not_comparable"}
    assert verdicts_with({"mtu": "x"}, _bridge((), (), mtu="1500")) == {"mtu": "not_comparable"}
    assert verdicts_with({"mtu": 0}, _bridge((), (), mtu="1500")) == {"mtu": "in_sync"}
    assert verdicts_with({"mtu": 1500}, _bridge((), (), mtu="0")) == {"mtu": "in_sync"}


def _user(name: str, subnets: tuple[str, ...], created: float | None) -> DockerNetwork:
    return DockerNetwork(
        "id-" + name, name, "bridge", "br-" + name, subnets, False, True, created=created
    )


POOLS = [{"base": "10.214.0.0/16", "size": 24}]


def test_address_pools_against_the_networks_allocated_since_the_start() -> None:
    """facts() has dockerd started at 100."""
    default = _bridge(("172.17.0.0/16",), ("172.17.0.1",), created=100.5)

    def pools(*networks: DockerNetwork, file: Any = POOLS, **changes: Any) -> KeyVerdict:
        (found,) = config_verdicts(
            facts({"default-address-pools": file}, **changes), (default, *networks)
        )
        return found

    # Nothing allocated since the start (the default bridge is no witness): unknown.
    assert pools().verdict == "not_comparable"
    assert pools(_user("old", ("172.18.0.0/16",), 99.0)).verdict == "not_comparable"
    # Cut from the file's pools (and not from dockerd's defaults): in sync.
    found = pools(_user("a", ("10.214.3.0/24",), 120.0))
    assert (found.verdict, found.running_value) == ("in_sync", '["10.214.3.0/24"]')
    # Cut from dockerd's default pools: the daemon runs without the file's pools.
    found = pools(_user("a", ("10.214.3.0/24",), 120.0), _user("b", ("172.18.0.0/16",), 130.0))
    assert (found.verdict, found.running_value) == ("restart", '["172.18.0.0/16"]')
    assert pools(_user("b", ("192.168.16.0/20",), 130.0), file_mtime=50.0).verdict == "drift"
    # Explicit subnets (any other shape) say nothing: neither the file's size nor the defaults'.
    for subnet in ("10.214.0.0/16", "192.168.77.0/24", "172.18.0.0/24", "10.99.0.0/24"):
        assert pools(_user("x", (subnet,), 120.0)).verdict == "not_comparable", subnet
    # A subnet both the file's pools and the defaults could have cut: unknown.
    overlapping = [{"base": "172.16.0.0/12", "size": 16}]
    assert pools(_user("x", ("172.18.0.0/16",), 120.0), file=overlapping).verdict == (
        "not_comparable"
    )
    # A family the file sets no pool for, a network with no creation time, or of another
    # driver: no witness.
    assert pools(_user("v6", ("fd00:1::/64",), 120.0)).verdict == "not_comparable"
    assert pools(_user("x", ("172.18.0.0/16",), None)).verdict == "not_comparable"
    overlay = DockerNetwork(
        "o", "ov", "overlay", "", ("172.18.0.0/16",), False, False, created=120.0
    )
    assert pools(overlay).verdict == "not_comparable"
    # IPv6 pools: judged against the file's alone (dockerd's own IPv6 pool is not known here).
    v6 = [{"base": "fd00:d4e:100::/56", "size": 64}]
    assert pools(_user("v6", ("fd00:d4e:100:3::/64",), 120.0), file=v6).verdict == "in_sync"
    # Not dockerd's shape: no pools.
    for bad in (
        [],
        {"base": "10.0.0.0/8"},
        [{"base": "nope", "size": 24}],
        [{"base": "10.0.0.0/8"}],
    ):
        assert pools(_user("a", ("10.214.3.0/24",), 120.0), file=bad).verdict == "not_comparable"


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
def test_each_recorded_engines_networks_judge_the_restart_only_keys(recording: Recording) -> None:
    """The recorded daemon.json sets none of fixed-cidr, mtu, default-address-pools: they are
    judged here as if it had, against the engine's own /networks (its default bridge's IPAM and
    MTU option, its user networks' subnets and creation times). Its start time is not in the
    recording; the default bridge's creation stands for it (dockerd makes it anew at start)."""
    answers = {
        api_key(a["path"]): json.loads(a["body"])
        for a in recording.api()
        if api_key(a["path"]) in ("/info", "/networks")
    }
    networks = [docker_network(n) for n in answers["/networks"]]
    bridge = next(n for n in networks if n.name == "bridge")
    assert bridge.mtu == "1500"
    assert bridge.ip_ranges == ("fd00:d4e::/64",)  # fixed-cidr-v6; no fixed-cidr: no IPv4 range
    info = json.dumps(running_subset(answers["/info"]), sort_keys=True)

    def judged(file: dict[str, Any]) -> dict[str, str]:
        started = bridge.created
        assert started is not None
        # The file written a minute after the start: a difference is a pending restart.
        daemon = facts(file, info=info, start_time=started, file_mtime=started + 60)
        return {v.key: v.verdict for v in config_verdicts(daemon, networks)}

    as_running = {"mtu": 1500, "fixed-cidr": "172.17.0.0/16", "fixed-cidr-v6": "fd00:d4e::/64"}
    assert judged(as_running) == dict.fromkeys(as_running, "in_sync")
    changed = {"mtu": 1400, "fixed-cidr": "172.17.0.0/24", "fixed-cidr-v6": "fd00:d4e::/80"}
    assert judged(changed) == dict.fromkeys(changed, "restart")
    # dhe-user and dhe-internal (172.18.0.0/16, 172.19.0.0/16) were cut from dockerd's default
    # pools after it started: pools the file would set are not the running ones.
    assert judged({"default-address-pools": [{"base": "10.214.0.0/16", "size": 24}]}) == {
        "default-address-pools": "restart"
    }
    # Pools that could have cut them as well as the defaults: unknown, not in sync.
    assert judged({"default-address-pools": [{"base": "172.16.0.0/12", "size": 16}]}) == {
        "default-address-pools": "not_comparable"
    }


@pytest.mark.parametrize("recording", RECORDINGS, ids=[r.name for r in RECORDINGS])
def test_the_key_table_is_each_recorded_engines_own_word(recording: Recording) -> None:
    """Which keys the version knows, by our table, against the engine's `dockerd --validate`
    (scripts/record-engine.sh asked it for each key). `proxies` only holds an object, which
    dockerd flattens before it looks for unknown keys: the probe cannot ask for it."""
    said = json.loads(recording.text("validate.json"))
    version = engine_version(recording.version)
    ours = {k for k in said["known"] + said["unknown"] if unknown_to(k, version) is not None}
    assert ours - {"proxies"} == set(said["unknown"]) - {"proxies"}


def test_the_network_fields_the_keys_are_judged_by() -> None:
    """IPRange, the MTU option and Created as the Engine API writes them (Go's RFC 3339, nine
    fractional digits); anything else is left out rather than guessed."""
    network = docker_network(
        {
            "Id": "b" * 64, "Name": "bridge", "Driver": "bridge",
            "Created": "2026-12-06T12:19:26.853654067Z",
            "Options": {"com.docker.network.driver.mtu": "1400"},
            "IPAM": {"Config": [
                {"Subnet": "10.213.0.0/24", "IPRange": "10.213.0.0/25", "Gateway": "10.213.0.1"},
                {"Subnet": "fd00:d4e::/64", "IPRange": "not a range"},
            ]},
        }
    )  # fmt: skip
    assert (network.ip_ranges, network.mtu) == (("10.213.0.0/25",), "1400")
    assert network.created == pytest.approx(1796559566.853654067)
    assert created_time("2026-12-06T13:19:26.5+01:00") == pytest.approx(1796559566.5)
    for bad in ("0001-01-01T00:00:00Z", "2026-13-06T12:19:26Z", "yesterday", 1796559566, None):
        assert created_time(bad) is None
    bare = docker_network({"Id": "c" * 64, "Name": "n", "Driver": "bridge"})
    assert (bare.ip_ranges, bare.mtu, bare.created) == ((), "", None)


_TEXT = st.one_of(st.none(), st.integers(), st.text(max_size=30), st.sampled_from((
    "10.214.0.0/16", "172.18.0.0/16", "192.168.16.0/20", "10.214.3.0/24", "fd00::/56",
)))  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    pools=st.one_of(
        _TEXT,
        st.lists(st.dictionaries(st.sampled_from(("base", "size")), st.one_of(_TEXT)), max_size=3),
    ),
    subnets=st.lists(
        st.tuples(st.sampled_from(("172.18.0.0/16", "10.214.3.0/24", "192.168.77.0/24")),
                  st.one_of(st.none(), st.floats(0, 300))),
        max_size=4,
    ),
)  # fmt: skip
def test_address_pools_never_in_sync_without_a_witness(pools: Any, subnets: Any) -> None:
    """Whatever the file holds: no crash, and in sync only with a network dockerd allocated
    after its start (100) from the file's pools."""
    networks = [_user(f"n{i}", (s,), created) for i, (s, created) in enumerate(subnets)]
    (found,) = config_verdicts(facts({"default-address-pools": pools}), networks)
    if found.verdict == "in_sync":
        assert any(c is not None and c >= 100 and s == "10.214.3.0/24" for s, c in subnets)
    assert found.verdict in ("in_sync", "restart", "not_comparable")
