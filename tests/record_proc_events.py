"""Record the kernel's process events for the unit tests: `python -m tests.record_proc_events`
(as root, in the host's PID namespace). Subscribes to the proc connector, then runs, phase by
phase, what the table must follow, and writes the datagrams of each phase that concern the
recorder's own processes (in tests/fixtures/proc_events/scene.json), with their pids:

- thread: the recorder starts a thread that renames itself and ends (events of a thread only);
- comm: the recorder renames itself (its comm changes, nothing else);
- spawn: `sh -c "sleep 0.4 & exec sleep 30"`: the shell forks, execs sh, forks its child, which
  execs sleep, and execs sleep itself;
- zombie: the child exits; the shell, now sleep, never reaps it;
- exit: the shell is killed and reaped by the recorder; its zombie child is reparented to init
  and reaped there, with no event of its own.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
import time
from pathlib import Path

from exporter.readers.proc_events import ProcEvents, parse_events

OUT = Path(__file__).resolve().parent / "fixtures" / "proc_events" / "scene.json"
SETTLE = 0.1  # seconds for the events of a phase to arrive (the kernel sends them at once)


def _phase(events: ProcEvents, pids: set[int]) -> list[str]:
    """The datagrams waiting that name one of pids (as child, process or parent), in hex."""
    time.sleep(SETTLE)
    select.select([events], [], [], SETTLE)
    kept = []
    for data in events.datagrams():
        if data is None:
            raise SystemExit("the socket overflowed: record again on a quieter host")
        if any({e.tgid, e.parent_tgid} & pids for e in parse_events(data)):
            kept.append(data.hex())
    return kept


def _thread() -> None:
    Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text("dhe-pr-thread")


def main() -> None:
    events = ProcEvents.open()
    me = os.getpid()
    phases: dict[str, list[str]] = {}
    worker = threading.Thread(target=_thread)
    worker.start()
    worker.join()
    phases["thread"] = _phase(events, {me})
    Path("/proc/self/comm").write_text("dhe-pr-recorder")
    phases["comm"] = _phase(events, {me})
    shell = subprocess.Popen(["sh", "-c", "sleep 0.4 & exec sleep 30"])
    time.sleep(0.1)
    children = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit()
        and (p / "stat").exists()
        and (p / "stat").read_text().rsplit(")", 1)[-1].split()[1] == str(shell.pid)
    ]
    (child,) = children
    pids = {me, shell.pid, child}
    phases["spawn"] = _phase(events, pids)
    time.sleep(0.5)
    phases["zombie"] = _phase(events, pids)
    shell.kill()
    shell.wait()
    phases["exit"] = _phase(events, pids)
    events.close()
    scene = {"recorder": me, "shell": shell.pid, "child": child, "phases": phases}
    OUT.write_text(json.dumps(scene, indent=1) + "\n")
    print(f"wrote {OUT}: " + ", ".join(f"{k} {len(v)}" for k, v in phases.items()))


if __name__ == "__main__":
    main()
