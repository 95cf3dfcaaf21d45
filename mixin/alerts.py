"""The alert rules, generated from code: deploy/prometheus/alerts.yml and the PrometheusRule in
deploy/kubernetes/prometheusrule.yaml, and their generated promtool tests (mixin/alert_tests.py).

    python -m mixin.alerts                          # write the files
    python -m mixin.alerts --check                  # exit 1 when one is stale
    python -m mixin.alerts --tests-out /tmp/t     # also the generated promtool tests
    python -m mixin.alerts --settings mine.yml --set job_selector='job="dhe"' --out-dir /tmp/x

Two ideas run through every rule:

- A verdict the exporter cannot re-check is held, not dropped. A collector that fails exports
  no series, and one refused a privilege exports no verdict: a plain `x == 1` would resolve
  then, with the fault still there. So each rule is "the live verdict, or the last verdict seen
  (within `blind_hold`) while its collector is blind": failing, refused a privilege, judging
  nothing (NAT), or the whole exporter unscraped. It resolves when a working collector says the
  fault is gone, or when the series goes away while the collector reads fine (a removed
  network takes its verdict with it).
- `keep_firing_for` (Prometheus >= 2.42) keeps an alert that fired up through short dips, so a
  fault that flaps pages once; sustained levels (zombies, collector success) are judged over a
  window that tolerates a brief dip.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from exporter.settings import label_name
from mixin import settings as mixin_settings
from mixin.settings import SettingsError, check_duration

ROOT = Path(__file__).resolve().parents[1]
RULES_PATH = Path("deploy/prometheus/alerts.yml")
PROMETHEUS_RULE_PATH = Path("deploy/kubernetes/prometheusrule.yaml")
SEVERITIES = ("info", "warning", "critical")


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class AlertSettings:
    """What an operator may change without touching the rules. `python -m mixin.alerts
    --list-settings` prints them."""

    job_selector: str = field(
        default='job="docker-host-exporter"',
        metadata=_help(
            "label matchers selecting the exporter's series and its `up`, in every rule "
            '(e.g. job=~"docker-host-exporter|dhe", cluster="a")'
        ),
    )
    runbook_url: str = field(
        default="docs/runbooks.md",
        metadata=_help("where docs/runbooks.md is published; #<alert name> is appended"),
    )
    severities: Mapping[str, str] = field(
        default_factory=_empty,
        metadata=_help("severity per alert name, over the defaults (info, warning, critical)"),
    )
    for_durations: Mapping[str, str] = field(
        default_factory=_empty, metadata=_help("`for` per alert name, over the defaults")
    )
    keep_firing_for: str = field(
        default="10m",
        metadata=_help(
            "how long an alert that fired stays up after its expression stops holding (rides "
            "out dips of a flapping fault; 0 turns it off, for Prometheus < 2.42)"
        ),
    )
    keep_firing_for_durations: Mapping[str, str] = field(
        default_factory=_empty,
        metadata=_help("keep_firing_for per alert name, over keep_firing_for"),
    )
    blind_hold: str = field(
        default="1h",
        metadata=_help(
            "a paging (critical) verdict held this long while what judges it is blind (a "
            "collector failing or refused a privilege, the exporter down or gone from "
            "discovery) raises DockerHostVerdictUnknown, critical, naming the host; the held "
            "alerts stay up until the host is judged again or target_memory has passed"
        ),
    )
    host_labels: str = field(
        default="instance",
        metadata=_help(
            "the target labels that identify a host, comma-separated, used in every join "
            "(cluster,instance where several clusters share instance names)"
        ),
    )
    flap_window: str = field(
        default="10m",
        metadata=_help("window over which a flapping verdict's share of bad samples is taken"),
    )
    flap_share: float = field(
        default=0.4,
        metadata=_help(
            "a verdict bad in at least this share of flap_window counts as bad (so a fault that "
            "comes and goes every minute pages once, and resolves once)"
        ),
    )
    host_namespaces: str = field(
        default="pid|net|ipc|uts|mnt",
        metadata=_help("namespaces a container must not share with the host (a regex)"),
    )
    host_namespace_allowed_label: str = field(
        default="docker-host-exporter.host-namespaces",
        metadata=_help(
            "the Docker label that, set to `allowed`, lets a container share host namespaces "
            "(export it with --collector.containers.labels=<it>; empty: no label allows)"
        ),
    )
    host_namespace_allowed_containers: str = field(
        default="",
        metadata=_help(
            "container names allowed to share host namespaces (a regex, e.g. "
            "node-exporter|cadvisor; empty: none by name). The exporter's own container is "
            "always allowed."
        ),
    )
    collector_success_window: str = field(
        default="15m", metadata=_help("window over which a collector's success ratio is taken")
    )
    collector_success_ratio: float = field(
        default=0.75,
        metadata=_help(
            "a collector succeeding in fewer of its runs than this (over the window) alerts; "
            "0.75 tolerates one failed run of a 2-minute collector in 15m"
        ),
    )
    zombie_window: str = field(
        default="15m", metadata=_help("window over which a container's zombies are judged")
    )
    zombie_quantile: float = field(
        default=0.6,
        metadata=_help(
            "zombies alert when this quantile of the window's counts is above 0: 0.6 fires "
            "when zombies were there in over 40% of the window (as flap_share), however they "
            "came and went"
        ),
    )
    conntrack_warning_ratio: float = field(
        default=0.8, metadata=_help("conntrack table fill that warns")
    )
    conntrack_critical_ratio: float = field(
        default=0.95, metadata=_help("conntrack table fill that pages")
    )
    conntrack_insert_failed_rate: float = field(
        default=0.1,
        metadata=_help(
            "conntrack insert failures per second that page (critical) when sustained for "
            "DockerHostConntrackInsertFailuresSustained's `for`; a single one only warns"
        ),
    )
    firewall_storm_count: int = field(
        default=10,
        metadata=_help(
            "Docker firewall rules missing on one host at once that make it one "
            "DockerHostFirewallRulesGone page (the Alertmanager config inhibits the per-rule "
            "alerts under it)"
        ),
    )
    target_memory: str = field(
        default="1d",
        metadata=_help(
            "how long a target that left service discovery is alerted on "
            "(DockerHostExporterTargetGone)"
        ),
    )

    def __post_init__(self) -> None:
        for name in ("keep_firing_for", "blind_hold", "collector_success_window"):
            check_duration(name, getattr(self, name))
        for name in ("zombie_window", "target_memory", "flap_window"):
            check_duration(name, getattr(self, name))
        for key, value in self.for_durations.items():
            check_duration(f"for_durations.{key}", value)
        for key, value in self.keep_firing_for_durations.items():
            check_duration(f"keep_firing_for_durations.{key}", value)
        for key, value in self.severities.items():
            if value not in SEVERITIES:
                raise SettingsError(
                    f"setting severities.{key}: {value!r} is not one of {', '.join(SEVERITIES)}"
                )
        for name in ("collector_success_ratio", "zombie_quantile", "flap_share"):
            if not 0 < getattr(self, name) <= 1:
                raise SettingsError(f"setting {name}: wants a number in (0, 1]")
        if not 0 < self.conntrack_warning_ratio < self.conntrack_critical_ratio <= 1:
            raise SettingsError(
                "settings conntrack_warning_ratio < conntrack_critical_ratio, both in (0, 1]"
            )
        self._check_storms_and_hosts()
        if not self.job_selector.strip() or any(c in self.job_selector for c in "{}`"):
            raise SettingsError(
                "setting job_selector: wants label matchers without braces or backticks, like "
                'job="docker-host-exporter"'
            )

    def _check_storms_and_hosts(self) -> None:
        if self.conntrack_insert_failed_rate <= 0:
            raise SettingsError("setting conntrack_insert_failed_rate: wants a number above 0")
        if self.firewall_storm_count < 1:
            raise SettingsError("setting firewall_storm_count: wants an integer of at least 1")
        labels = [x.strip() for x in self.host_labels.split(",")]
        if not all(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", x) for x in labels):
            raise SettingsError(
                f"setting host_labels: wants label names separated by commas, got "
                f"{self.host_labels!r}"
            )
        if "instance" not in labels:
            raise SettingsError("setting host_labels: wants instance among them")

    @property
    def hosts(self) -> tuple[str, ...]:
        """The labels that identify a host, in order."""
        return tuple(x.strip() for x in self.host_labels.split(","))


# The collector that reads Docker's filter rules and IP forwarding: the switch the filter
# alerts' holds look at.
FIREWALL = "firewall"


@dataclass(frozen=True)
class Blind:
    """What must be judging for a verdict to be re-checked; while it is not, the alert holds
    what was firing (and only that: ALERTS of the same alert, and the last verdict recorded
    while it was judging)."""

    collectors: tuple[str, ...] = ()  # must succeed, be privileged and have reported
    secondary: tuple[str, ...] = ()  # blind only while failing or refused a privilege
    family: str | None = None  # also docker_host_<family>_judged{family} == 1 (nat, filter)
    by_label: bool = False  # the alert's own `collector` label names the collector
    any_collector: bool = False  # blind while any collector of the host fails


@dataclass(frozen=True)
class Alert:
    name: str
    group: str
    severity: str
    for_: str
    live: str  # the expression while the collector judges
    summary: str
    description: str
    blind: Blind | None = None  # None: never held (the exporter's own health)
    keep_firing: bool = True


class Q:
    """Selectors scoped by the job selector: Q(s)('docker_host_x', 'a="b"'); and the host
    labels every join is on."""

    def __init__(self, s: AlertSettings) -> None:
        self.matchers = s.job_selector.strip().rstrip(",")
        self.hosts = s.hosts
        self.host = ", ".join(s.hosts)
        # One series per host and job (and whatever else the job selector names: those labels
        # must survive an aggregation, or the selector no longer finds its result).
        named = re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", self.matchers)
        self.target = ", ".join(dict.fromkeys((*s.hosts, "job", *named)))

    def __call__(self, metric: str, *extra: str) -> str:
        return f"{metric}{{{', '.join((self.matchers, *extra))}}}"

    def on(self, *more: str) -> str:
        return f"on({', '.join((*self.hosts, *more))})"

    def by(self, *more: str) -> str:
        """An aggregation per host that keeps `job`: the job selector still finds the result
        (ALERTS, the recorded verdicts)."""
        return f"by ({', '.join((self.target, *more))})"


def last_judged(name: str) -> str:
    """The recording rule of an alert's last verdict taken while it was judging."""
    return f"docker_host:last_judged:{name}"


TARGET_KNOWN = "docker_host:target_known"


def _collector_matcher(collectors: tuple[str, ...]) -> str:
    return (
        f'collector="{collectors[0]}"'
        if len(collectors) == 1
        else f'collector=~"{"|".join(collectors)}"'
    )


def judging(q: Q, blind: Blind) -> tuple[str, str]:
    """(on-labels, expression): the hosts (and families) where the verdict is re-checked now.
    A target absent from discovery has no `up`, so it is not judging: absent is blind."""
    up = f"{q('up')} == 1"
    if blind.by_label:
        success = q("docker_host_collector_success")
        return q.on("collector"), f"{success} == 1\nand {q.on()} {up}"
    expr = up
    for c in blind.collectors:
        match = f'collector="{c}"'
        success = q("docker_host_collector_success", match)
        privilege = q("docker_host_privilege_missing", match)
        expr += f"\nand {q.on()} (\n  {success} == 1\n  unless {q.on()} {privilege} == 1\n)"
    if blind.secondary:
        match = _collector_matcher(blind.secondary)
        success = q("docker_host_collector_success", match)
        privilege = q("docker_host_privilege_missing", match)
        expr += f"\nunless {q.on()} (\n  {success} == 0\n  or {privilege} == 1\n)"
    if blind.any_collector:
        expr += f"\nunless {q.on()} {q('docker_host_collector_success')} == 0"
    if blind.family:
        judged = q(f"docker_host_{blind.family}_judged")
        return q.on("family"), f"{judged} == 1\nand {q.on()} (\n{_indent(expr)}\n)"
    return q.on(), expr


def _indent(text: str, by: str = "  ") -> str:
    return by + text.replace("\n", "\n" + by)


def expression(a: Alert, q: Q) -> str:
    """The recorded verdict (the live expression, evaluated once, in the recording rule just
    before): while its judge sees, as is; while blind, only what was firing."""
    if a.blind is None:
        return a.live
    on, judge = judging(q, a.blind)
    verdict = q(last_judged(a.name))
    firing = q("ALERTS", f'alertname="{a.name}"', 'alertstate="firing"')
    return (
        f"{verdict}\nand {on} (\n{_indent(judge)}\n)\n"
        f"or (\n  {verdict}\n  and ignoring(alertname, alertstate, severity) {firing}\n)"
    )


def recording(a: Alert, q: Q) -> str:
    """The last verdict taken while judging: written from the live expression while the
    judge can see, carried over unchanged while it cannot, for target_memory at most."""
    assert a.blind is not None
    on, judge = judging(q, a.blind)
    return (
        f"(\n{_indent(a.live)}\n)\nand {on} (\n{_indent(judge)}\n)\n"
        f"or (\n  {q(last_judged(a.name))}\n  unless {on} (\n{_indent(judge, '    ')}\n  )\n"
        f"  and {q.on()} {q(TARGET_KNOWN)}\n)"
    )


def _where(a: Alert) -> str:
    """The description's last sentence: when the alert holds a verdict it cannot re-check."""
    b = a.blind
    if b is None:
        return ""
    if b.collectors:
        who = f"the {' or '.join(b.collectors)} collector cannot judge "
        who += "(failing, refused a privilege, not run yet"
        who += f", {b.family} rules of this family not judged)" if b.family else ")"
        who += " or the exporter is unscraped or gone from discovery"
    elif b.by_label:
        who = "that collector fails or the exporter is unscraped or gone from discovery"
    elif b.any_collector:
        who = "a collector fails or the exporter is unscraped or gone from discovery"
    else:
        who = "the exporter is unscraped or gone from discovery"
    return f" While {who}, this alert holds what was firing."


class Verdicts:
    """The live expression of a verdict series: bad now, or bad for flap_share of flap_window
    (a fault that comes and goes pages once and resolves once)."""

    def __init__(self, s: AlertSettings, q: Q) -> None:
        self.s, self.q = s, q

    def flag(self, metric: str, *matchers: str) -> str:
        """0/1 series, 1 bad, present while judged."""
        series = self.q(metric, *matchers)
        share = f"avg_over_time({series}[{self.s.flap_window}]) >= {self.s.flap_share:g}"
        # ...and still there: a series gone with its object (a network removed) is no fault.
        return f"{series} == 1\nor (\n  {share}\n  and {series}\n)"

    def zero_bad(self, metric: str, *matchers: str) -> str:
        """A series whose 0 is the fault (a count, or a 0/1 that is 1 when fine)."""
        series = self.q(metric, *matchers)
        bad = f"({series} == bool 0)[{self.s.flap_window}:]"
        share = f"avg_over_time({bad}) >= {self.s.flap_share:g}"
        return f"{series} == 0\nor (\n  {share}\n  and {series}\n)"

    def present(self, metric: str, *matchers: str) -> str:
        """A series present (1) only while bad: its share is its samples over `up`'s."""
        series = self.q(metric, *matchers)
        w = self.s.flap_window
        share = (
            f"count_over_time({series}[{w}])\n  / on({self.q.target}) group_left()\n"
            f"  count_over_time({self.q('up')}[{w}])\n  >= {self.s.flap_share:g}"
        )
        return f"{series} == 1\nor (\n  {share}\n)"


def filter_alerts(q: Q, v: Verdicts) -> list[Alert]:
    """Issue 15's: Docker's filter rules, and IP forwarding."""
    # Docker has bridge networks of that family: the network collector's bridges, the family
    # read from the subnet (not the filter rules, which are absent while they are not judged).
    bridges = q("docker_host_bridge_info", 'network!=""')
    by_family = (
        f'label_replace(\n  label_replace({bridges}, "family", "ipv4", "subnet", "[0-9.]+/[0-9]+"),'
        '\n  "family", "ipv6", "subnet", ".*:.*"\n)'
    )
    has_bridges = f"count {q.by('family')} (\n{_indent(by_family)}\n) > 0"
    return [
        Alert(
            "DockerHostFilterRuleMissing",
            "docker-host-network",
            "critical",
            "2m",
            v.flag("docker_host_filter_rule_missing"),
            "Docker filter rule {{ $labels.rule }} ({{ $labels.family }}) missing on "
            '{{ $labels.instance }}: network "{{ $labels.network }}", container '
            '"{{ $labels.container }}"',
            "The {{ $labels.family }} filter rule {{ $labels.rule }} that Docker writes for "
            'network "{{ $labels.network }}" (empty: every network) and container '
            '"{{ $labels.container }}" (empty: the network\'s own rule) is gone from the '
            "forward path on {{ $labels.instance }}, in this reading and one a moment before "
            "(a firewall reload, `nft flush ruleset`, a configuration-management run): "
            "forwarded traffic it admits is dropped now, or passes only by a policy Docker "
            "did not set.",
            Blind((FIREWALL,), family="filter"),
        ),
        Alert(
            "DockerHostIPForwardingOff",
            "docker-host-network",
            "critical",
            "2m",
            f"(\n{_indent(v.zero_bad('docker_host_ip_forward'))}\n)\n"
            f"and {q.on('family')} {has_bridges}",
            "IP forwarding ({{ $labels.family }}) is off on {{ $labels.instance }} while Docker "
            "has bridge networks",
            "{{ $labels.family }} forwarding is off on {{ $labels.instance }} "
            "(net.ipv4.ip_forward or net.ipv6.conf.all.forwarding is 0) while Docker has bridge "
            "networks of that family: no published port answers and no container reaches "
            "anything off this host now.",
            Blind((FIREWALL,), secondary=("network",)),
        ),
    ]


def alerts(s: AlertSettings) -> list[Alert]:
    q = Q(s)
    v = Verdicts(s, q)
    allowed_label = []
    if s.host_namespace_allowed_label:
        allowed = f'{label_name(s.host_namespace_allowed_label)}="allowed"'
        labels = q("docker_host_container_labels", allowed)
        allowed_label.append(f"unless {q.on('container')} {labels}")
    own = q("docker_host_exporter_container_info")
    # The exporter's own container, by name, and by short id (how the processes collector names
    # containers while it has never had a container list).
    own_container = (
        f"unless {q.on('container')} (\n  {own}\n  or label_replace(\n    {own},\n"
        '    "container", "$1", "container_id", "(.+)"\n  )\n)'
    )
    shared_matchers = [f'namespace=~"{s.host_namespaces}"']
    if s.host_namespace_allowed_containers:
        shared_matchers.append(f'container!~"{s.host_namespace_allowed_containers}"')
    shared_metric = "docker_host_container_namespace_shared_with_host"
    containers_failing = q("docker_host_collector_success", 'collector="containers"')
    # Without the container list the exporter cannot tell its own container from another:
    # no new verdict while the containers collector fails (what fired before is held).
    exclusions = "\n".join(
        [own_container, *allowed_label, f"unless {q.on()} {containers_failing} == 0"]
    )

    entries, limit = q("docker_host_conntrack_entries"), q("docker_host_conntrack_entries_limit")
    per_container = q("docker_host_container_conntrack_entries", "instance=%q")
    top = (
        "Most entries: {{ range $i, $s := printf "
        f"`topk(3, sum by (container) ({per_container}))`"
        " $labels.instance | query }}{{ if $i }}, {{ end }}{{ $s.Labels.container }}"
        " ({{ $s.Value | humanize }}){{ end }}."
    )
    zombies = q("docker_host_container_zombie_processes")
    nat_privilege = q("docker_host_privilege_missing", 'collector="nat"')
    success = q("docker_host_collector_success")
    network = Blind(("network",), secondary=("containers",))
    nat = Blind(("nat",), family="nat")
    nat_plain = Blind(("nat",))
    ports = Blind(("ports",), secondary=("nat", FIREWALL, "network"))
    processes = Blind(("processes",))
    daemon = Blind(("daemon",))
    conntrack = Blind(("conntrack",))
    insert_failed = q("docker_host_conntrack_stat_insert_failed_total")
    dropped = q("docker_host_conntrack_stat_drop_total")
    drift = "docker_host_daemon_config_drift"
    # One host-wide cause (a flushed firewall, Docker's chains gone): the rules it took, per
    # host, counted once; the Alertmanager config inhibits the per-rule alerts under it.
    gone_rules = (
        f"count {q.by()} (\n  {q('docker_host_nat_dnat_missing')} == 1\n"
        f"  or {q('docker_host_nat_masquerade_missing')} == 1\n"
        f"  or {q('docker_host_filter_rule_missing')} == 1\n)\n>= {s.firewall_storm_count}"
    )

    found = [
        # -- the host-wide causes first: their page goes out with (and inhibits) the rest --
        Alert(
            "DockerHostFirewallRulesGone",
            "docker-host-network",
            "critical",
            "2m",
            gone_rules,
            "{{ $value }} of Docker's firewall rules are missing on {{ $labels.instance }}",
            "{{ $value }} NAT and filter rules that Docker's networks and published ports need "
            "are gone from {{ $labels.instance }} at once: the firewall was flushed or "
            "reloaded (`iptables -F`, `nft flush ruleset`, firewalld, a configuration-"
            "management run) or Docker's chains were removed. Published ports and outgoing "
            "traffic of its containers are broken now. One cause: the per-rule and per-port "
            "alerts under it are inhibited (deploy/alertmanager/alertmanager.yml).",
            Blind(("nat",), secondary=(FIREWALL,)),
        ),
        # -- network ---------------------------------------------------------------------------
        Alert(
            "DockerHostVethOrphaned",
            "docker-host-network",
            "warning",
            "5m",
            v.present("docker_host_veth_orphaned"),
            "Orphaned veth {{ $labels.interface }} on {{ $labels.instance }}",
            'Host veth {{ $labels.interface }} (bridge "{{ $labels.bridge }}") on '
            "{{ $labels.instance }} has no running container behind it (reason: "
            "{{ $labels.reason }}). It leaks an interface and, on a Docker bridge, an address "
            "on that network; traffic is not affected.",
            network,
        ),
        Alert(
            "DockerHostMasqueradeRuleMissing",
            "docker-host-network",
            "critical",
            "2m",
            v.flag("docker_host_nat_masquerade_missing"),
            "MASQUERADE rule missing for Docker network {{ $labels.network }} on "
            "{{ $labels.instance }}",
            "Network {{ $labels.network }} ({{ $labels.subnet }} on {{ $labels.bridge }}) on "
            "{{ $labels.instance }} has IP masquerade on but no `-s {{ $labels.subnet }} ! -o "
            "{{ $labels.bridge }} -j MASQUERADE` rule in either firewall backend: its "
            "containers cannot reach anything off this host now.",
            nat,
        ),
        Alert(
            "DockerHostDnatRuleMissing",
            "docker-host-network",
            "critical",
            "2m",
            v.flag("docker_host_nat_dnat_missing"),
            "DNAT rule missing for {{ $labels.container }} port {{ $labels.host_port }} on "
            "{{ $labels.instance }}",
            "Container {{ $labels.container }} on {{ $labels.instance }} publishes "
            "{{ $labels.protocol }} port {{ $labels.host_port }} (to "
            "{{ $labels.container_port }}) but no DNAT rule forwards it: clients of the "
            "published port are not reaching the container now.",
            nat,
        ),
        # Warning, not critical: what breaks most ports at once (a missing DNAT or filter rule,
        # IP forwarding off) pages through its own critical alert; this one names the ports
        # affected and covers the rest (a veth down, a bridge port blocked, no docker-proxy), and
        # a DROP in DOCKER-USER that shadows a port may be the user's own policy.
        Alert(
            "DockerHostPublishedPortBroken",
            "docker-host-network",
            "warning",
            "5m",
            v.present("docker_host_published_port_broken", 'hop!="listener"'),
            "Published port {{ $labels.host_address }}:{{ $labels.host_port }}/"
            "{{ $labels.protocol }} of {{ $labels.container }} broken at {{ $labels.hop }} on "
            "{{ $labels.instance }}",
            "Container {{ $labels.container }} on {{ $labels.instance }} publishes "
            "{{ $labels.protocol }} port {{ $labels.host_port }} on {{ $labels.host_address }} "
            "(to {{ $labels.container_port }}), and the first hop on its path that is broken is "
            "{{ $labels.hop }} (dnat, forward, ip_forward, veth, bridge_port, proxy or "
            "hairpin_masquerade). `docker-host-exporter inspect` says why in its PUBLISHED PORTS "
            "table.",
            ports,
        ),
        Alert(
            "DockerHostPublishedPortNotListening",
            "docker-host-network",
            "warning",
            "10m",
            v.present("docker_host_published_port_broken", 'hop="listener"'),
            "Nothing listens on {{ $labels.protocol }}/{{ $labels.container_port }} in "
            "{{ $labels.container }}, published on {{ $labels.host_port }}, on "
            "{{ $labels.instance }}",
            "Container {{ $labels.container }} on {{ $labels.instance }} publishes "
            "{{ $labels.protocol }} port {{ $labels.host_port }} to its port "
            "{{ $labels.container_port }}, but no socket inside the container listens there "
            "(or only on another address): the network path is whole, the application is not "
            "serving. Often a misconfigured application (wrong port, bound to 127.0.0.1).",
            ports,
        ),
        *filter_alerts(q, v),
        Alert(
            "DockerHostNatRulesSplitAcrossBackends",
            "docker-host-network",
            "warning",
            "10m",
            v.flag("docker_host_nat_rules_split_across_backends"),
            "nat rules in both iptables-legacy and nf_tables on {{ $labels.instance }}",
            "Both firewall backends of {{ $labels.instance }} hold nat rules. Packets meet "
            "both rule sets in an order few expect; Docker's rules are in one of them only. A "
            "known cause of broken container networking after a distribution upgrade or a tool "
            "that still uses iptables-legacy.",
            nat_plain,
        ),
        Alert(
            "DockerHostNatBackendUnreadable",
            "docker-host-network",
            "warning",
            "10m",
            f"(\n{_indent(v.zero_bad('docker_host_nat_backend_readable'))}\n)\n"
            f"unless {q.on()} {nat_privilege} == 1",
            "Firewall backend {{ $labels.backend }} unreadable on {{ $labels.instance }}: no "
            "NAT verdicts",
            "The exporter on {{ $labels.instance }} cannot read the {{ $labels.backend }} "
            "firewall backend (not for want of a privilege: DockerHostPrivilegeMissing covers "
            "that). No MASQUERADE or DNAT rule can be called missing there, so "
            "DockerHostMasqueradeRuleMissing and DockerHostDnatRuleMissing cannot fire. The "
            "exporter's log says why.",
            nat_plain,
        ),
        # -- daemon ----------------------------------------------------------------------------
        Alert(
            "DockerHostDaemonDown",
            "docker-host-daemon",
            "critical",
            "2m",
            v.zero_bad("docker_host_daemon_processes"),
            "{{ $labels.process }} is not running on {{ $labels.instance }}",
            "No {{ $labels.process }} process runs on {{ $labels.instance }}. Containers cannot "
            "be started, stopped or restarted; without live-restore a stopped dockerd stopped "
            "its containers, and published ports served by docker-proxy are closed.",
            processes,
        ),
        Alert(
            "DockerHostDaemonConfigReloadNeeded",
            "docker-host-daemon",
            "info",
            "15m",
            v.flag(drift, 'applies_on="reload"'),
            "daemon.json key {{ $labels.key }} not applied on {{ $labels.instance }}: a SIGHUP "
            "applies it",
            "{{ $labels.key }} in dockerd's configuration file on {{ $labels.instance }} "
            "differs from what the running daemon reports, and dockerd reloads this option: "
            "`kill -HUP $(pidof dockerd)` applies it without stopping containers.",
            daemon,
        ),
        Alert(
            "DockerHostDaemonConfigRestartNeeded",
            "docker-host-daemon",
            "warning",
            "15m",
            v.flag(drift, 'applies_on="restart"'),
            "daemon.json key {{ $labels.key }} not applied on {{ $labels.instance }}: only a "
            "restart applies it",
            "{{ $labels.key }} in dockerd's configuration file on {{ $labels.instance }} "
            "differs from what the running daemon reports, and a SIGHUP does not apply this "
            "option. Nothing is broken now; the next restart of dockerd (an upgrade, a reboot) "
            "will change it, wanted or not.",
            daemon,
        ),
        Alert(
            "DockerHostDaemonFlagConflict",
            "docker-host-daemon",
            "warning",
            "5m",
            v.flag("docker_host_daemon_config_flag_conflict"),
            "{{ $labels.key }} is both a dockerd flag and in daemon.json on "
            "{{ $labels.instance }}: the next dockerd start fails",
            "dockerd on {{ $labels.instance }} refuses to start when a key is given both on "
            "its command line and in its configuration file. It runs now, so nothing is broken "
            "yet; the next restart (an upgrade, a reboot) fails and takes its containers down. "
            "Fix it before then.",
            daemon,
        ),
        Alert(
            "DockerHostDaemonConfigInvalid",
            "docker-host-daemon",
            "warning",
            "5m",
            v.zero_bad("docker_host_daemon_config_file_valid"),
            "dockerd would not start with its configuration file on {{ $labels.instance }}",
            "dockerd's configuration file on {{ $labels.instance }} is unreadable, not a JSON "
            "object, holds an unknown key or a key also given as a flag, or is missing while "
            "--config-file names it. The running daemon is fine; the next restart fails and "
            "takes its containers down. The exporter's log says why.",
            daemon,
        ),
        # -- containers ------------------------------------------------------------------------
        Alert(
            "DockerHostContainerSharesHostNamespace",
            "docker-host-containers",
            "warning",
            "5m",
            f"(\n{_indent(v.flag(shared_metric, *shared_matchers))}\n)\n{exclusions}",
            "{{ $labels.container }} shares the host's {{ $labels.namespace }} namespace on "
            "{{ $labels.instance }}",
            "Container {{ $labels.container }} on {{ $labels.instance }} runs in the host's own "
            "{{ $labels.namespace }} namespace (--{{ $labels.namespace }}=host or equivalent): "
            "it is not isolated from the host there. Expected for some agents (label them "
            "allowed, see the runbook); a surprise for most workloads.",
            Blind(("processes",), secondary=("containers",)),
        ),
        Alert(
            "DockerHostZombieProcesses",
            "docker-host-containers",
            "warning",
            "5m",
            f"quantile_over_time({s.zombie_quantile:g}, {zombies}[{s.zombie_window}]) > 0",
            "Zombie processes in {{ $labels.container }} on {{ $labels.instance }}",
            "Processes in {{ $labels.container }} on {{ $labels.instance }} exited and were "
            f"never reaped, most of the time over the last {s.zombie_window}: its PID 1 does "
            "not wait for its children. They hold PIDs until the container stops.",
            processes,
        ),
        Alert(
            "DockerHostOrphanedShim",
            "docker-host-containers",
            "warning",
            "10m",
            v.flag("docker_host_shim_orphaned"),
            "containerd shim {{ $labels.shim_pid }} on {{ $labels.instance }} holds a "
            "container Docker does not list",
            "The shim for container id {{ $labels.container_id }} is running on "
            "{{ $labels.instance }}, but the Engine API does not list that container: dockerd "
            "lost track of it, and its processes run unmanaged.",
            Blind(("processes",), secondary=("containers",)),
        ),
        # -- conntrack -------------------------------------------------------------------------
        Alert(
            "DockerHostConntrackTableFilling",
            "docker-host-conntrack",
            "warning",
            "5m",
            f"{entries} / {limit} > {s.conntrack_warning_ratio:g}",
            "Conntrack table {{ $value | humanizePercentage }} full on {{ $labels.instance }}",
            "The connection-tracking table of {{ $labels.instance }} holds more than "
            f"{s.conntrack_warning_ratio:.0%} of nf_conntrack_max. When it is full the kernel "
            f"drops new connections, of every container and of the host. {top}",
            conntrack,
        ),
        Alert(
            "DockerHostConntrackTableNearlyFull",
            "docker-host-conntrack",
            "critical",
            "2m",
            f"{entries} / {limit} > {s.conntrack_critical_ratio:g}",
            "Conntrack table {{ $value | humanizePercentage }} full on {{ $labels.instance }}",
            "The connection-tracking table of {{ $labels.instance }} holds more than "
            f"{s.conntrack_critical_ratio:.0%} of nf_conntrack_max: new connections of every "
            f"container and of the host are about to be dropped. {top}",
            conntrack,
        ),
        # A single insert clash (parallel DNS queries over UDP) warns; a sustained rate pages.
        Alert(
            "DockerHostConntrackInsertFailing",
            "docker-host-conntrack",
            "warning",
            "0s",
            f"increase({insert_failed}[5m]) > 0",
            "Conntrack insert failures on {{ $labels.instance }}",
            "The kernel of {{ $labels.instance }} failed to insert new conntrack entries in the "
            "last 5 minutes: a full table, or clashing entries (often parallel "
            "DNS queries over UDP). The packets that needed them were dropped.",
            conntrack,
        ),
        Alert(
            "DockerHostConntrackInsertFailuresSustained",
            "docker-host-conntrack",
            "critical",
            "10m",
            f"rate({insert_failed}[5m]) > {s.conntrack_insert_failed_rate:g}",
            "Conntrack insert failures at {{ $value | humanize }}/s on {{ $labels.instance }}",
            "The kernel of {{ $labels.instance }} has failed to insert new conntrack entries at "
            f"more than {s.conntrack_insert_failed_rate:g} a second for a while: connections of "
            "containers and the host are being dropped all along, not in a passing clash.",
            conntrack,
        ),
        Alert(
            "DockerHostConntrackDropping",
            "docker-host-conntrack",
            "critical",
            "0s",
            f"increase({dropped}[5m]) > 0",
            "Conntrack is dropping packets on {{ $labels.instance }}",
            "The kernel of {{ $labels.instance }} dropped packets in the last 5 minutes "
            "because the connection-tracking table had no room for a new entry "
            "(nf_conntrack: table full, dropping packet): new connections of containers and the "
            "host fail.",
            conntrack,
        ),
        # -- the exporter ----------------------------------------------------------------------
        Alert(
            "DockerHostCollectorFailing",
            "docker-host-exporter",
            "warning",
            "5m",
            f"avg_over_time({success}[{s.collector_success_window}]) < "
            f"{s.collector_success_ratio:g}",
            "Collector {{ $labels.collector }} of docker-host-exporter is failing on "
            "{{ $labels.instance }}",
            "The {{ $labels.collector }} collector on {{ $labels.instance }} succeeded in only "
            "{{ $value | humanizePercentage }} of its runs over the last "
            f"{s.collector_success_window}, failing or timing out the others. While it fails, "
            "its metrics are absent: its alerts hold what was firing and cannot fire anew. "
            "The exporter's log says why, once per change.",
            Blind(),  # its own failure is the fault: only the exporter down hides it
        ),
        Alert(
            "DockerHostPrivilegeMissing",
            "docker-host-exporter",
            "warning",
            "10m",
            v.present("docker_host_privilege_missing"),
            "docker-host-exporter on {{ $labels.instance }} lacks {{ $labels.capability }}: "
            "{{ $labels.collector }} verdicts are blind",
            "The {{ $labels.collector }} collector on {{ $labels.instance }} was refused "
            "something for lack of {{ $labels.capability }}. What it could not read is not "
            "judged (no missing rule, no orphan, no namespace is called broken there), so "
            "alerts on it cannot fire. Give the exporter its four capabilities (docs/deploy.md).",
            Blind(by_label=True),
        ),
        Alert(
            "DockerHostSeriesDropped",
            "docker-host-exporter",
            "warning",
            "15m",
            f"{q('docker_host_series_dropped')} > 0",
            "docker-host-exporter on {{ $labels.instance }} drops series of {{ $labels.family }}",
            "{{ $labels.family }} on {{ $labels.instance }} has more series than "
            "--metrics.max-series-per-family: {{ $value }} were left out of the last "
            "exposition. Alerts and dashboards on that family see only part of the host.",
            Blind(any_collector=True),
        ),
        Alert(
            "DockerHostExporterDown",
            "docker-host-exporter",
            "warning",
            "5m",
            f"{q('up')} == 0",
            "docker-host-exporter on {{ $labels.instance }} is down",
            "Prometheus cannot scrape docker-host-exporter on {{ $labels.instance }}: no new "
            "fault of that host can be seen, and its alerts hold what was firing.",
            keep_firing=False,
        ),
        Alert(
            "DockerHostExporterTargetGone",
            "docker-host-exporter",
            "warning",
            "10m",
            f"{q(TARGET_KNOWN)} unless {q.on()} {q('up')}",
            "docker-host-exporter target {{ $labels.instance }} is no longer scraped",
            "Prometheus scraped docker-host-exporter on {{ $labels.instance }} within the last "
            f"{s.target_memory} but has no such target now: it left service discovery or the "
            "scrape configuration (a renamed job, a relabelling, a host removed). If that was "
            f"meant, silence this; it ends {s.target_memory} after the last scrape.",
            keep_firing=False,
        ),
        Alert(
            "DockerHostExporterAbsent",
            "docker-host-exporter",
            "warning",
            "10m",
            f"absent({q('up')})",
            "No docker-host-exporter target is scraped on any host",
            f"Prometheus has no target matching {{{s.job_selector}}}: no host is watched by "
            "docker-host-exporter, and none of its alerts can fire. The job was renamed, "
            "dropped from the scrape configuration, or discovery finds no target.",
            keep_firing=False,
        ),
    ]
    return [*found, verdict_unknown(s, q, found)]


def verdict_unknown(s: AlertSettings, q: Q, found: list[Alert]) -> Alert:
    """The handover: paging verdicts held blind for blind_hold. Counted per host (one page,
    not one per verdict); it resolves when the host is judged again."""
    terms = []
    for a in found:
        if a.blind is None or s.severities.get(a.name, a.severity) != "critical":
            continue
        on, judge = judging(q, a.blind)
        firing = q("ALERTS", f'alertname="{a.name}"', 'alertstate="firing"')
        terms.append(f"(\n  {firing}\n  unless {on} (\n{_indent(judge, '    ')}\n  )\n)")
    return Alert(
        "DockerHostVerdictUnknown",
        "docker-host-exporter",
        "critical",
        s.blind_hold,
        f"count {q.by()} (\n" + _indent("\nor ".join(terms)) + "\n)",
        "{{ $value }} paging verdicts on {{ $labels.instance }} are unknown: the exporter has "
        "been blind to them for over " + s.blind_hold,
        "{{ $value }} critical alerts on {{ $labels.instance }} are held on a verdict nobody "
        f"has re-checked for over {s.blind_hold}: the exporter is down, gone from service "
        "discovery, or the collectors that judge them fail or lack a privilege. The faults may "
        "be fixed or worse; they stay up, held, until the host is judged again. Bring the "
        "exporter back (DockerHostExporterDown, DockerHostExporterTargetGone, "
        "DockerHostCollectorFailing, DockerHostPrivilegeMissing say which).",
    )


def known_alerts(s: AlertSettings) -> list[str]:
    return [a.name for a in alerts(s)]


def check_alert_names(s: AlertSettings) -> None:
    names = set(known_alerts(s))
    for setting in ("severities", "for_durations", "keep_firing_for_durations"):
        unknown = sorted(set(getattr(s, setting)) - names)
        if unknown:
            raise SettingsError(
                f"setting {setting}: unknown alert {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )


def resolved(a: Alert, s: AlertSettings) -> Alert:
    """The alert with the operator's severity and `for` over the defaults."""
    return dataclasses.replace(
        a,
        severity=s.severities.get(a.name, a.severity),
        for_=s.for_durations.get(a.name, a.for_),
    )


def keep_firing_for(a: Alert, s: AlertSettings) -> str:
    if not a.keep_firing:
        return "0s"
    return s.keep_firing_for_durations.get(a.name, s.keep_firing_for)


def rule(a: Alert, s: AlertSettings) -> dict[str, Any]:
    body: dict[str, Any] = {"alert": a.name, "expr": expression(a, Q(s))}
    if mixin_settings.duration_seconds(a.for_) > 0:
        body["for"] = a.for_
    keep = keep_firing_for(a, s)
    if mixin_settings.duration_seconds(keep) > 0:
        body["keep_firing_for"] = keep
    body["labels"] = {"severity": a.severity}
    body["annotations"] = {
        "summary": a.summary,
        "description": a.description + _where(a),
        "runbook_url": f"{s.runbook_url}#{a.name.lower()}",
    }
    return body


def rule_groups(s: AlertSettings) -> dict[str, Any]:
    check_alert_names(s)
    q = Q(s)
    # Every target seen within target_memory, once per evaluation: what bounds a hold on a
    # target gone from discovery, and DockerHostExporterTargetGone.
    known = f"max by ({q.target}) (\n  last_over_time({q('up')}[{s.target_memory}])\n)"
    groups: dict[str, list[dict[str, Any]]] = {}
    for a in alerts(s):
        group = groups.setdefault(a.group, [])
        if a.blind is not None:
            # Before its alert, in its group: the alert reads this evaluation's verdict.
            group.append({"record": last_judged(a.name), "expr": recording(a, q)})
        group.append(rule(resolved(a, s), s))
    # In the group of DockerHostExporterTargetGone, which reads it in the same evaluation.
    groups["docker-host-exporter"].insert(0, {"record": TARGET_KNOWN, "expr": known})
    return {"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]}


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, the way people write them."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    if "\n" in text:
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", text)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=True)


HEADER = (
    "# Generated by `python -m mixin.alerts` from mixin/alerts.py: edit that, not this file.\n"
    "# Each alert's runbook is in docs/runbooks.md; tested by tests/rules/*.test.yml\n"
    "# (promtool test rules). Needs Prometheus >= 2.42 (keep_firing_for).\n"
)


def render_rules(s: AlertSettings) -> str:
    return HEADER + dump(rule_groups(s))


def render_prometheus_rule(s: AlertSettings) -> str:
    rule_object = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "docker-host-exporter",
            "labels": {"app.kubernetes.io/name": "docker-host-exporter"},
        },
        "spec": rule_groups(s),
    }
    return (
        "# Generated by `python -m mixin.alerts` from mixin/alerts.py, as\n"
        "# deploy/prometheus/alerts.yml is: edit that.\n" + dump(rule_object)
    )


def outputs(s: AlertSettings) -> dict[Path, str]:
    """The checked-in files, by path relative to the repository."""
    return {RULES_PATH: render_rules(s), PROMETHEUS_RULE_PATH: render_prometheus_rule(s)}


def write_tests(s: AlertSettings, directory: Path) -> list[Path]:
    """The generated promtool tests (not checked in: regenerated whenever they run), each
    beside the generated rules it tests (mixin/alert_tests.py)."""
    from mixin import alert_tests  # noqa: PLC0415 - it imports this module

    return alert_tests.write_all(s, directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixin.alerts", description=__doc__.split("\n")[0]
    )
    mixin_settings.add_arguments(parser)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--out-dir", type=Path, default=ROOT, help="where to write (the repo)")
    parser.add_argument(
        "--tests-out",
        type=Path,
        metavar="DIR",
        help="also write the generated promtool tests there (DIR/generated.test.yml)",
    )
    parser.add_argument(
        "--list-settings", action="store_true", help="print the settings and their defaults"
    )
    args = parser.parse_args(argv)
    if args.list_settings:
        print(mixin_settings.describe(AlertSettings))
        return 0
    try:
        s = mixin_settings.from_arguments(AlertSettings, args)
        files = outputs(s)
    except SettingsError as exc:
        print(f"mixin.alerts: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path, text in files.items():
        target = args.out_dir / path
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(str(path))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    if args.tests_out is not None:
        write_tests(s, args.tests_out)
    if stale:
        print(
            "mixin.alerts: stale, run `python -m mixin.alerts`: " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    # One copy of this module: the tests generator imports it as mixin.alerts.
    from mixin.alerts import main as _main

    sys.exit(_main())
