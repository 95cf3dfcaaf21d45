"""The daemon collector's `inspect` section: each daemon.json key against the running dockerd."""

from __future__ import annotations

from exporter.collectors.daemon.facts import NAME, DaemonConfigFacts
from exporter.collectors.daemon.judge import KeyVerdict, config_verdicts, reload_blocker
from exporter.collectors.nat.facts import NatFacts
from exporter.report import short, table, when
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    daemon = snapshot.current(NAME, DaemonConfigFacts)
    nat = snapshot.last_good("nat", NatFacts)
    networks = nat.expectations.networks if nat and nat.expectations else None
    return [daemon_section(daemon, config_verdicts(daemon, networks))] if daemon else []


_VERDICT_TEXT = {
    "in_sync": "in sync",
    "reload": "reload needed (SIGHUP)",
    "restart": "restart needed (file changed since dockerd started)",
    "drift": "DRIFT: dockerd started with this file and runs otherwise",
    "conflict": "CONFLICT: also a flag, dockerd will not start",
    "unknown_key": "UNKNOWN KEY: dockerd will not start",
    "not_comparable": "not comparable",
}


def _verdict_text(verdict: KeyVerdict) -> str:
    if verdict.verdict == "reload_will_fail":
        return f"reload will fail: {verdict.reason}"
    if verdict.verdict == "unknown_key" and verdict.reason:
        return f"UNKNOWN KEY: {verdict.reason}; dockerd will not start"
    return _VERDICT_TEXT[verdict.verdict]


def daemon_section(daemon: DaemonConfigFacts, verdicts: tuple[KeyVerdict, ...] = ()) -> str:
    if daemon.pid is None:
        return f"DAEMON CONFIGURATION\n(no dockerd: {daemon.docker_error})\n"
    state = "missing" if not daemon.file_present else "present"
    header = (
        f"DAEMON CONFIGURATION ({daemon.config_path}: {state}"
        f"{', ' + daemon.file_error if daemon.file_error else ''}; "
        f"valid: {'yes' if _valid(daemon, verdicts) else 'NO'}; started {when(daemon.start_time)}"
        f"; last reload {when(daemon.reloads[-1][0]) if daemon.reloads else 'none'})"
    )
    rows = [
        (v.key, short(v.file_value), short(v.running_value or "-"), _verdict_text(v))
        for v in verdicts
    ]
    text = table(header, ("KEY", "FILE", "RUNNING", "VERDICT"), rows)
    if daemon.flag_keys:
        text += (
            f"command-line flags (a SIGHUP never changes these): {', '.join(daemon.flag_keys)}\n"
        )
    if daemon.unit_path:
        text += f"systemd unit {daemon.unit_path}: ExecStart={daemon.unit_exec_start}"
        text += f" EnvironmentFile={daemon.unit_environment_file or '-'}\n"
    return text


def _valid(daemon: DaemonConfigFacts, verdicts: tuple[KeyVerdict, ...]) -> bool:
    if daemon.file_error is not None or (daemon.config_path_explicit and not daemon.file_present):
        return False
    return reload_blocker(verdicts) is None
