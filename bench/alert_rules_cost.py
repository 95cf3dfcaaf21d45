"""What the alert rules cost Prometheus at each evaluation, on hosts of 250 containers: the
rules look back `blind_hold` (last_over_time) to hold a verdict while its collector is blind,
and a range selector reads every sample of its window.

The history is constructed (every series a healthy host of that size exports for the families
the rules read, a sample every 15 s for `blind_hold` and a bit), backfilled into a real
Prometheus (Debian's, `promtool tsdb create-blocks-from openmetrics`), which then evaluates the
generated rules every 15 s; the numbers are its own `prometheus_rule_group_last_duration_seconds`.
No root, no engine.

    python -m bench.alert_rules_cost [--containers 250] [--hosts 4] [--hold 1h] [--rules F]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from mixin.alerts import AlertSettings, alerts, render_rules, rule_groups
from mixin.settings import duration_seconds

STEP = 15
GROUP_DURATION = re.compile(
    r'prometheus_rule_group_last_duration_seconds\{rule_group="[^"]*;([^"]+)"\} (\S+)'
)
COLLECTORS = (
    "containers", "processes", "network", "nat", "firewall", "ports", "daemon", "layers",
    "conntrack",
)  # fmt: skip
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def families(host: str, containers: int) -> Iterator[tuple[str, str, list[dict[str, str]]]]:
    """(name, type, label sets) of one host."""
    names = [f"app-{i:03d}" for i in range(containers)]
    base = {"job": "docker-host-exporter", "instance": host}
    yield "up", "gauge", [base]
    yield "docker_host_collector_success", "gauge", [{**base, "collector": c} for c in COLLECTORS]
    yield (
        "docker_host_container_namespace_shared_with_host",
        "gauge",
        [{**base, "container": n, "namespace": ns} for n in names for ns in NAMESPACES],
    )
    yield (
        "docker_host_container_zombie_processes",
        "gauge",
        [{**base, "container": n} for n in names],
    )
    yield (
        "docker_host_container_labels",
        "gauge",
        [{**base, "container": n, "label_docker_host_exporter_host_namespaces": ""} for n in names],
    )
    yield (
        "docker_host_exporter_container_info",
        "gauge",
        [{**base, "container": "dhe", "container_id": "0123456789ab"}],
    )
    yield (
        "docker_host_shim_orphaned",
        "gauge",
        [
            {**base, "shim_pid": str(1000 + i), "container_id": f"{i:012x}"}
            for i in range(containers)
        ],
    )
    ports = [
        {**base, "container": n, "protocol": "tcp", "host_port": str(8000 + i),
         "container_port": "80", "family": "ipv4"}
        for i, n in enumerate(names) if i % 5 == 0
    ]  # fmt: skip
    yield "docker_host_nat_dnat_missing", "gauge", ports
    yield (
        "docker_host_nat_masquerade_missing",
        "gauge",
        [{**base, "network": f"net{i}", "subnet": f"172.{20 + i}.0.0/16",
          "bridge": f"br-{i}", "family": "ipv4"} for i in range(6)],
    )  # fmt: skip
    yield "docker_host_nat_judged", "gauge", [{**base, "family": f} for f in ("ipv4", "ipv6")]
    yield "docker_host_nat_rules_split_across_backends", "gauge", [base]
    yield (
        "docker_host_nat_backend_readable",
        "gauge",
        [{**base, "backend": b} for b in ("legacy", "nftables")],
    )
    yield (
        "docker_host_daemon_processes",
        "gauge",
        [{**base, "process": p} for p in ("dockerd", "containerd")],
    )
    yield "docker_host_daemon_config_file_valid", "gauge", [base]
    yield (
        "docker_host_daemon_config_drift",
        "gauge",
        [{**base, "key": k, "applies_on": a} for k, a in
         (("debug", "reload"), ("log-driver", "restart"), ("insecure-registries", "reload"))],
    )  # fmt: skip
    yield "docker_host_conntrack_entries", "gauge", [base]
    yield "docker_host_conntrack_entries_limit", "gauge", [base]
    yield "docker_host_conntrack_stat_insert_failed", "counter", [base]
    yield (
        "docker_host_filter_rule_missing",
        "gauge",
        [{**p, "network": "net0", "rule": "port_accept:tcp/80"} for p in ports]
        + [{**base, "family": "ipv4", "network": f"net{i}", "container": "", "rule": "established"}
           for i in range(6)],
    )  # fmt: skip
    yield "docker_host_filter_judged", "gauge", [{**base, "family": f} for f in ("ipv4", "ipv6")]
    yield "docker_host_ip_forward", "gauge", [{**base, "family": f} for f in ("ipv4", "ipv6")]
    yield (
        "docker_host_bridge_info",
        "gauge",
        [{**base, "bridge": f"br-{i}", "network": f"net{i}", "network_id": f"{i:012x}",
          "driver": "bridge", "subnet": f"172.{20 + i}.0.0/16", "stp": "disabled"}
         for i in range(6)],
    )  # fmt: skip
    yield "docker_host_conntrack_stat_drop", "counter", [base]


def value(name: str) -> str:
    if name in ("docker_host_conntrack_entries_limit",):
        return "262144"
    if name == "docker_host_conntrack_entries":
        return "1000"
    healthy_one = (
        "up",
        "docker_host_collector_success",
        "docker_host_container_labels",
        "docker_host_exporter_container_info",
        "docker_host_nat_judged",
        "docker_host_nat_backend_readable",
        "docker_host_daemon_processes",
        "docker_host_daemon_config_file_valid",
        "docker_host_filter_judged",
        "docker_host_ip_forward",
        "docker_host_bridge_info",
    )
    return "1" if name in healthy_one else "0"


def openmetrics(path: Path, hosts: int, containers: int, seconds: int, end: int) -> int:
    start = end - seconds
    samples = 0
    with path.open("w") as out:
        by_name: dict[str, tuple[str, list[dict[str, str]]]] = {}
        for h in range(hosts):
            for name, kind, labelsets in families(f"h{h}", containers):
                by_name.setdefault(name, (kind, []))[1].extend(labelsets)
        for name, (kind, labelsets) in by_name.items():
            out.write(f"# TYPE {name} {kind}\n")
            exposed = f"{name}_total" if kind == "counter" else name
            v = value(name)
            for labels in labelsets:
                text = ",".join(f'{k}="{val}"' for k, val in labels.items())
                lines = [f"{exposed}{{{text}}} {v} {t}\n" for t in range(start, end, STEP)]
                out.writelines(lines)
                samples += len(lines)
        out.write("# EOF\n")
    return samples


def plain_rules(s: AlertSettings) -> str:
    """Each alert's live expression alone: what the rules would cost without holding."""
    groups = rule_groups(s)
    live = {a.name: a.live for a in alerts(s)}
    for group in groups["groups"]:
        group["rules"] = [{**r, "expr": live[r["alert"]]} for r in group["rules"] if "alert" in r]
    return yaml.safe_dump(groups)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
        return str(answer.read().decode())


def samples_read(base: str, rules: Path) -> dict[str, int]:
    """The samples each group's expressions read in one evaluation (Prometheus's query stats,
    totalQueryableSamples): what the rules cost, whatever the load on the machine."""
    found: dict[str, int] = {}
    for group in yaml.safe_load(rules.read_text())["groups"]:
        total = 0
        for r in group["rules"]:
            query = urllib.parse.urlencode({"query": r["expr"], "stats": "all"})
            answer = json.loads(scrape(f"{base}/api/v1/query?{query}"))
            total += int(answer["data"]["stats"]["samples"]["totalQueryableSamples"])
        found[group["name"]] = total
    return found


def main() -> None:  # noqa: PLR0915 - set up, run, report
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=250)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--hold", default="1h", help="the rules' blind_hold")
    parser.add_argument("--evaluations", type=int, default=6)
    parser.add_argument(
        "--plain", action="store_true", help="the rules without the look-through, for comparison"
    )
    parser.add_argument(
        "--rules",
        type=Path,
        help="evaluate this rules file instead of the generated one (another commit's, e.g. "
        "git show main:deploy/prometheus/alerts.yml > before.yml)",
    )
    args = parser.parse_args()
    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    assert prometheus and promtool, "Debian's prometheus package is part of the test bed"
    work = Path(tempfile.mkdtemp(prefix="dhe-rules-bench-"))
    try:
        now = int(time.time())
        seconds = int(duration_seconds(args.hold)) + 600
        samples = openmetrics(work / "in.om", args.hosts, args.containers, seconds, now - 30)
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(work / "in.om"),
             str(work / "data")],
            check=True, timeout=3600,
        )  # fmt: skip
        (work / "in.om").unlink()
        rules = work / "alerts.yml"
        settings = AlertSettings(blind_hold=args.hold)
        if args.rules is not None:
            rules.write_text(args.rules.read_text())
        else:
            rules.write_text(plain_rules(settings) if args.plain else render_rules(settings))
        (work / "prometheus.yml").write_text(
            yaml.safe_dump(
                {"global": {"evaluation_interval": f"{STEP}s"}, "rule_files": [str(rules)]}
            )
        )
        port = 19090 + (now % 1000)
        process = subprocess.Popen(
            [prometheus, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            durations: list[float] = []
            by_group: dict[str, list[float]] = {}
            deadline = time.monotonic() + STEP * (args.evaluations + 4)
            seen: set[str] = set()
            while time.monotonic() < deadline and len(durations) < args.evaluations:
                time.sleep(1)
                try:
                    text = scrape(f"http://127.0.0.1:{port}/metrics")
                except OSError:
                    continue
                found = re.findall(GROUP_DURATION, text)
                total = sum(float(v) for _, v in found)
                stamp = ",".join(v for _, v in found)
                # Every group evaluated at least once (a group not yet run reports 0).
                if found and all(float(v) > 0 for _, v in found) and stamp not in seen:
                    seen.add(stamp)
                    durations.append(total)
                    for name, v in found:
                        by_group.setdefault(name, []).append(float(v))
            firing = json.loads(scrape(f"http://127.0.0.1:{port}/api/v1/alerts"))["data"]
            read = samples_read(f"http://127.0.0.1:{port}", rules)
        finally:
            process.terminate()
            process.wait(30)
        durations.sort()
        print(
            json.dumps(
                {
                    "hosts": args.hosts,
                    "containers_per_host": args.containers,
                    "blind_hold": "none (plain rules)" if args.plain else args.hold,
                    "samples_backfilled": samples,
                    "evaluations": len(durations),
                    "all_groups_seconds_median": durations[len(durations) // 2]
                    if durations
                    else None,
                    "all_groups_seconds_max": durations[-1] if durations else None,
                    "alerts_active": len(firing["alerts"]),
                    "rules": str(args.rules) if args.rules else "generated",
                    "samples_read_per_evaluation": read,
                    "group_seconds_median": {
                        name: sorted(v)[len(v) // 2] for name, v in sorted(by_group.items())
                    },
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
