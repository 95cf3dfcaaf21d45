"""The daemon collector's `inspect` section: each daemon.json key against the running dockerd."""

from __future__ import annotations

from exporter.collectors.daemon.facts import NAME, DaemonConfigFacts
from exporter.collectors.daemon.judge import config_file_valid, config_verdicts
from exporter.report import short, table, when
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    daemon = snapshot.current(NAME, DaemonConfigFacts)
    return [daemon_section(daemon)] if daemon is not None else []


_VERDICT_TEXT = {
    "in_sync": "in sync",
    "reload": "reload needed (SIGHUP)",
    "restart": "restart needed",
    "conflict": "CONFLICT: also a flag, dockerd will not start",
    "unknown_key": "UNKNOWN KEY: dockerd will not start",
    "not_comparable": "not comparable",
}


def daemon_section(daemon: DaemonConfigFacts) -> str:
    if daemon.pid is None:
        return f"DAEMON CONFIGURATION\n(no dockerd: {daemon.docker_error})\n"
    state = "missing" if not daemon.file_present else "present"
    header = (
        f"DAEMON CONFIGURATION ({daemon.config_path}: {state}"
        f"{', ' + daemon.file_error if daemon.file_error else ''}; "
        f"valid: {'yes' if config_file_valid(daemon) else 'NO'}; started {when(daemon.start_time)}"
        f"; last reload {when(daemon.reloads[-1][0]) if daemon.reloads else 'none'})"
    )
    rows = [
        (v.key, short(v.file_value), short(v.running_value or "-"), _VERDICT_TEXT[v.verdict])
        for v in config_verdicts(daemon)
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
