"""What the daemon collector observed: dockerd's configuration as written and as running."""

from __future__ import annotations

from dataclasses import dataclass

NAME = "daemon"  # the collector's name: --collector.daemon, its series' collector label


@dataclass(frozen=True)
class DaemonConfigFacts:
    """dockerd's configuration as written and as running. Values that may hold a secret
    (proxy URLs, credentials in a mirror URL) are redacted by the reader before they get here."""

    pid: int | None
    start_time: float | None
    flag_keys: tuple[str, ...]  # config keys given on the command line
    config_path: str
    config_path_explicit: bool  # --config-file was given
    file_present: bool
    file_error: str | None  # unreadable, unparsable, not an object, too large
    file_mtime: float | None
    file_values: tuple[tuple[str, str], ...]  # key -> canonical JSON of its value
    info: str | None  # the compared subset of GET /info, canonical JSON
    reloads: tuple[tuple[float, str], ...]  # (time, attributes as canonical JSON) since start
    docker_error: str | None
    unit_path: str = ""
    unit_exec_start: str = ""
    unit_environment_file: str = ""
    unit_flag_keys: tuple[str, ...] = ()
    # dockerd's root (/proc/PID/root) was refused: the file and the unit were not judged.
    # The kernel asks for CAP_SYS_PTRACE over a process with more capabilities than ours.
    root_refused: bool = False

    @classmethod
    def unknown(cls, reason: str, info: str | None = None) -> DaemonConfigFacts:
        return cls(None, None, (), "", False, False, None, None, (), info, (), reason)
