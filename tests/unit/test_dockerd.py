"""dockerd's settings as it resolves them (flag, else daemon.json, else default), on
constructed readings; Go's strconv.ParseBool exactly."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.readers.dockerd import Dockerd, parse_bool
from exporter.readers.procfs import DaemonProcess


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "no", "on", "off", "tRUE", "fAlse", " true", "2"])
def test_go_parse_bool_refuses_the_rest(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go boolean"):
        parse_bool(text)


def dockerd(
    flags: dict[str, list[str]] | None = None,
    config: dict[str, Any] | None = None,
    *,
    file_error: str | None = None,
    root_refused: bool = False,
) -> Dockerd:
    return Dockerd(
        process=DaemonProcess("dockerd", 10, 0.0),
        argv=("dockerd",),
        flags=flags or {},
        config_path="/etc/docker/daemon.json",
        config_path_explicit=False,
        root_refused=root_refused,
        file_present=config is not None,
        file_mtime=None,
        file_error=file_error,
        config=config,
    )


def test_a_flag_wins_then_the_file_then_the_default() -> None:
    assert dockerd().boolean("iptables", default=True) == (True, "default")
    assert dockerd(config={}).boolean("userland-proxy", default=True) == (True, "default")
    in_file = dockerd(config={"iptables": False})
    assert in_file.boolean("iptables", default=True) == (False, "daemon.json")
    both = dockerd({"iptables": ["true", "0"]}, {"iptables": True})
    assert both.boolean("iptables", default=True) == (False, "flag")  # the last flag counts
    assert dockerd({"firewall-backend": ["nftables"]}).text("firewall-backend", "iptables") == (
        "nftables",
        "flag",
    )
    in_file = dockerd(config={"firewall-backend": "nftables"})
    assert in_file.text("firewall-backend", "iptables") == ("nftables", "daemon.json")


def test_what_cannot_be_told_is_unknown_never_the_default() -> None:
    # A value dockerd itself refuses, an unreadable or unparsable file, a refused root.
    assert dockerd({"iptables": ["yes"]}).boolean("iptables", True) == (None, "")
    assert dockerd(config={"iptables": "false"}).boolean("iptables", True) == (None, "")
    assert dockerd(config={"firewall-backend": 1}).text("firewall-backend", "x") == (None, "")
    unreadable = dockerd(file_error="not JSON: Expecting value at line 1 column 1")
    assert unreadable.boolean("userland-proxy", True) == (None, "")
    assert dockerd(root_refused=True).boolean("iptables", True) == (None, "")
    # A flag needs no file.
    assert dockerd({"iptables": ["false"]}, root_refused=True).boolean("iptables", True) == (
        False,
        "flag",
    )
