"""promtool tests for every alert, generated from a description of its fault: which series show
it (bad and good values), which collector and privilege hide it, and what kind of expression
judges it. A small model of the rules (mixin/alerts.py) and of Prometheus's alert states (`for`,
keep_firing_for, staleness, range windows) says, minute by minute, whether the alert fires;
the scenarios check it at every change and at regular points in between:

- fires: the fault from minute `lead` on; a sibling host with good values stays quiet;
- quiet: no fault anywhere; resolves: the fault fixed, the collector reading;
- holds while blind: the collector failing, a privilege lost (NAT, filter: rules not judged),
  the exporter down for over two hours, the target gone from discovery (no `up` at all), the
  collector not reported since a restart: still firing, resolved once it reads the fault gone;
- fixed, then blind: the exporter down 20 minutes, then restarted with its collectors silent
  for 3: never fires again; a lone bad sample followed by an outage never fires;
- flapping: dipping one minute in five stays firing; a single bad sample every ten minutes
  never fires; a fault present in alternating 1-minute (and 2-minute) windows pages once and
  resolves once;
- a DaemonSet rollout: the target gone a minute and back as a new pod: one alert throughout.

The same model renders a file at 15 s scrapes and evaluations (stale markers between), and one
for rules generated with host_labels=cluster,instance (two clusters, one instance name). The
expected annotations are the rules' templates filled in here, independently of promtool.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixin import alerts as rules
from mixin import scrape
from mixin.settings import duration_seconds

INSTANCE, SIBLING = "h1", "h2"
BLIND_PHASES = ("fail", "priv", "down", "unreported", "gone")
# Alerts whose Case.collector is not the one their rule looks through by name (held on any
# collector failing, or on the alert's own collector label): no "not reported" scenario.
BLIND_COLLECTOR = {"DockerHostPrivilegeMissing": "", "DockerHostSeriesDropped": ""}
MATCHER = re.compile(r'\s*(\w+)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
LONG_BLIND = 130  # minutes: "blindness of 2 h", longer than blind_hold
SPELL = 30  # a shorter blind spell: longer than every `for` and keep_firing_for


def selector_labels(s: rules.AlertSettings) -> dict[str, str]:
    """The labels the job selector asks for, given to every test series; equality matchers only
    (a regex has no one value to give)."""
    found: dict[str, str] = {}
    text = s.job_selector.strip()
    while text:
        m = MATCHER.match(text)
        if m is None or m.group(2) != "=":
            raise ValueError(f"tests need a job selector of equality matchers: {s.job_selector}")
        found[m.group(1)] = m.group(3)
        text = text[m.end() :].strip()
    return found


Phase = str  # good | bad | fail | priv | down | unreported | gone
Token = float | str | None  # a value, "stale", or None (no sample)


@dataclass(frozen=True)
class Input:
    metric: str
    labels: Mapping[str, str]
    bad: float
    good: float | None  # None: absent while there is no fault
    counter: bool = False  # bad: the increase per minute


@dataclass(frozen=True)
class Case:
    alert: str
    inputs: tuple[Input, ...]
    kind: str  # how the live expression judges: see live_values()
    collector: str | None = None  # whose failure hides the inputs; None: no such scenario
    capability: str | None = None  # whose loss hides them; None: no such scenario
    family: str | None = None  # nat | filter: docker_host_<family>_judged{family}
    lead: int = 0  # minutes of good values before the fault
    value: float = 1.0  # $value while bad (kinds whose value is fixed)
    labels: Mapping[str, str] | None = None  # the alert's labels (default: the first input's)


def minutes(text: str) -> int:
    return int(duration_seconds(text) // 60)


def cases(s: rules.AlertSettings) -> list[Case]:
    nat_missing = {"network": "app", "subnet": "172.18.0.0/16", "bridge": "br-1"}
    port = {
        "container": "web",
        "host_address": "0.0.0.0",  # noqa: S104 (a label value)
        "host_port": "8080",
        "protocol": "tcp",
        "container_port": "80",
    }
    dnat = {"protocol": "tcp", "container_port": "80", "family": "ipv4"}
    return [
        Case(
            "DockerHostFirewallRulesGone",
            tuple(
                Input(
                    "docker_host_nat_dnat_missing",
                    {"container": f"web{i}", "host_port": str(8080 + i), **dnat},
                    1,
                    0,
                )
                for i in range(s.firewall_storm_count + 2)
            ),
            "count",
            "nat",
            "CAP_NET_ADMIN",
            value=s.firewall_storm_count + 2,
            labels={},
        ),
        Case(
            "DockerHostVethOrphaned",
            (
                Input(
                    "docker_host_veth_orphaned",
                    {"interface": "vorph0", "reason": "no_container", "bridge": "docker0"},
                    1,
                    None,
                ),
            ),
            "present",
            "network",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostMasqueradeRuleMissing",
            (Input("docker_host_nat_masquerade_missing", {**nat_missing, "family": "ipv4"}, 1, 0),),
            "flag",
            "nat",
            "CAP_NET_ADMIN",
            family="nat",
        ),
        Case(
            "DockerHostDnatRuleMissing",
            (
                Input(
                    "docker_host_nat_dnat_missing",
                    {"container": "web", "host_port": "8080", **dnat},
                    1,
                    0,
                ),
            ),
            "flag",
            "nat",
            "CAP_NET_ADMIN",
            family="nat",
        ),
        Case(
            "DockerHostPublishedPortBroken",
            (Input("docker_host_published_port_broken", {**port, "hop": "forward"}, 1, None),),
            "present",
            "ports",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostPublishedPortNotListening",
            (Input("docker_host_published_port_broken", {**port, "hop": "listener"}, 1, None),),
            "present",
            "ports",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostFilterRuleMissing",
            (
                Input(
                    "docker_host_filter_rule_missing",
                    {
                        "family": "ipv4",
                        "network": "app",
                        "container": "web",
                        "rule": "port_accept:tcp/80",
                    },
                    1,
                    0,
                ),
            ),
            "flag",
            rules.FIREWALL,
            "CAP_NET_ADMIN",
            family="filter",
        ),
        Case(
            "DockerHostIPForwardingOff",
            (
                Input("docker_host_ip_forward", {"family": "ipv4"}, 0, 1),
                Input(
                    "docker_host_bridge_info",
                    {
                        "bridge": "br-1",
                        "network": "app",
                        "network_id": "0123456789ab",
                        "driver": "bridge",
                        "subnet": "172.18.0.0/16",
                        "stp": "disabled",
                    },
                    1,
                    1,
                ),
            ),
            "zero",
            rules.FIREWALL,
            "CAP_NET_ADMIN",
            value=0,
        ),
        Case(
            "DockerHostNatRulesSplitAcrossBackends",
            (Input("docker_host_nat_rules_split_across_backends", {}, 1, 0),),
            "flag",
            "nat",
            "CAP_NET_ADMIN",
        ),
        # A refused privilege is DockerHostPrivilegeMissing's: no privilege scenario here.
        Case(
            "DockerHostNatBackendUnreadable",
            (Input("docker_host_nat_backend_readable", {"backend": "legacy"}, 0, 1),),
            "zero",
            "nat",
            value=0,
        ),
        Case(
            "DockerHostDaemonDown",
            (Input("docker_host_daemon_processes", {"process": "dockerd"}, 0, 1),),
            "zero",
            "processes",
            "CAP_SYS_PTRACE",
            value=0,
        ),
        Case(
            "DockerHostDaemonConfigReloadNeeded",
            (
                Input(
                    "docker_host_daemon_config_drift",
                    {"key": "insecure-registries", "applies_on": "reload"},
                    1,
                    0,
                ),
            ),
            "flag",
            "daemon",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostDaemonConfigRestartNeeded",
            (
                Input(
                    "docker_host_daemon_config_drift",
                    {"key": "log-driver", "applies_on": "restart"},
                    1,
                    0,
                ),
            ),
            "flag",
            "daemon",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostDaemonFlagConflict",
            (Input("docker_host_daemon_config_flag_conflict", {"key": "storage-driver"}, 1, 0),),
            "flag",
            "daemon",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostDaemonConfigInvalid",
            (Input("docker_host_daemon_config_file_valid", {}, 0, 1),),
            "zero",
            "daemon",
            "CAP_SYS_PTRACE",
            value=0,
        ),
        Case(
            "DockerHostContainerSharesHostNamespace",
            (
                Input(
                    "docker_host_container_namespace_shared_with_host",
                    {"container": "agent", "namespace": "pid"},
                    1,
                    0,
                ),
            ),
            "flag",
            "processes",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostZombieProcesses",
            (Input("docker_host_container_zombie_processes", {"container": "leaky"}, 3, 0),),
            "zombies",
            "processes",
            "CAP_SYS_PTRACE",
            value=3,
        ),
        Case(
            "DockerHostOrphanedShim",
            (
                Input(
                    "docker_host_shim_orphaned",
                    {"shim_pid": "4242", "container_id": "5f1e0c0ffee5"},
                    1,
                    0,
                ),
            ),
            "flag",
            "processes",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostConntrackTableFilling",
            (
                Input("docker_host_conntrack_entries", {}, 900, 100),
                Input("docker_host_conntrack_entries_limit", {}, 1000, 1000),
            ),
            "ratio",
            "conntrack",
            "CAP_NET_ADMIN",
            value=0.9,
        ),
        Case(
            "DockerHostConntrackTableNearlyFull",
            (
                Input("docker_host_conntrack_entries", {}, 980, 100),
                Input("docker_host_conntrack_entries_limit", {}, 1000, 1000),
            ),
            "ratio",
            "conntrack",
            "CAP_NET_ADMIN",
            value=0.98,
        ),
        Case(
            "DockerHostConntrackInsertFailing",
            (Input("docker_host_conntrack_stat_insert_failed_total", {}, 10, 0, counter=True),),
            "increase",
            "conntrack",
            "CAP_NET_ADMIN",
            lead=5,
        ),
        Case(
            "DockerHostConntrackInsertFailuresSustained",
            (Input("docker_host_conntrack_stat_insert_failed_total", {}, 45, 0, counter=True),),
            "rate",
            "conntrack",
            "CAP_NET_ADMIN",
            lead=5,
        ),
        Case(
            "DockerHostConntrackDropping",
            (Input("docker_host_conntrack_stat_drop_total", {}, 10, 0, counter=True),),
            "increase",
            "conntrack",
            "CAP_NET_ADMIN",
            lead=5,
        ),
        # Its own collector failing is the fault: the exporter down is what could hide it.
        Case(
            "DockerHostCollectorFailing",
            (Input("docker_host_collector_success", {"collector": "nat"}, 0, 1),),
            "success",
            lead=2 * minutes(s.collector_success_window),
        ),
        Case(
            "DockerHostPrivilegeMissing",
            (
                Input(
                    "docker_host_privilege_missing",
                    {"collector": "nat", "capability": "CAP_NET_ADMIN"},
                    1,
                    None,
                ),
            ),
            "present",
            "nat",
        ),
        Case(
            "DockerHostSeriesDropped",
            (Input("docker_host_series_dropped", {"family": "docker_host_veth_info"}, 12, None),),
            "now",
            "network",
            value=12,
        ),
        Case("DockerHostExporterDown", (Input("up", {}, 0, 1),), "now", value=0),
    ]


# Alerts whose scenarios do not fit the pattern above: tested in tests/rules/alerts.test.yml
# and by handover_groups() here.
BY_HAND = {
    "DockerHostExporterTargetGone": "its fault is a series vanishing, not a value",
    "DockerHostExporterAbsent": "it has no instance: no target exists to name",
    "DockerHostVerdictUnknown": "its fault is another alert held blind: handover_groups()",
}


# -- values ---------------------------------------------------------------------------------


def _quantile(q: float, values: Sequence[float]) -> float:
    """Prometheus's quantile_over_time: linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _go_float(v: float) -> str:
    """How Go's text/template prints a float64 ($value)."""
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text


def _humanize(v: float) -> str:
    """Prometheus's humanize: SI prefixes, %.4g."""
    if v == 0 or abs(v) >= 1:
        prefixes = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"]
        i = 0
        while abs(v) >= 1000 and i < len(prefixes) - 1:
            v, i = v / 1000, i + 1
        return f"{v:.4g}{prefixes[i]}"
    prefixes = ["", "m", "u", "n", "p", "f", "a", "z", "y"]
    i = 0
    while abs(v) < 1 and i < len(prefixes) - 1:
        v, i = v * 1000, i + 1
    return f"{v:.4g}{prefixes[i]}"


def render_template(template: str, labels: Mapping[str, str], value: float) -> str:
    """The few template forms the rules use. A `range ... query` finds nothing here: the
    generated tests hold no per-container conntrack series."""
    text = re.sub(r"\{\{ range .*\{\{ end \}\}", "", template, flags=re.S)
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    text = text.replace("{{ $value | humanizePercentage }}", f"{value * 100:.4g}%")
    text = text.replace("{{ $value | humanize }}", _humanize(value))
    text = text.replace("{{ $value }}", _go_float(value))
    if "{{" in text:
        raise ValueError(f"a template form the test generator does not know: {text}")
    return text


# -- timelines ------------------------------------------------------------------------------


def _tokens(values: Sequence[float | None]) -> list[Token]:
    """None after a value becomes a staleness marker, as Prometheus writes one when a series
    leaves a scrape."""
    out: list[Token] = []
    previous: float | None = None
    for v in values:
        if v is None:
            out.append("stale" if previous is not None else None)
        else:
            out.append(float(v))
        previous = v
    return out


def _compress(tokens: Sequence[Token]) -> str:
    """promtool's expanding notation: `v` once, `vxN` (N+1 times), `a+bxN`, `_xN`."""
    parts: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        j = i + 1
        if t is None:
            while j < len(tokens) and tokens[j] is None:
                j += 1
            parts.append("_" if j - i == 1 else f"_x{j - i}")
        elif t == "stale":
            parts.append("stale")
        else:
            assert isinstance(t, float)
            step: float | None = None
            if j < len(tokens) and isinstance(tokens[j], float):
                step = float(tokens[j]) - t  # type: ignore[arg-type]
                while (
                    j < len(tokens)
                    and isinstance(tokens[j], float)
                    and float(tokens[j]) - float(tokens[j - 1]) == step  # type: ignore[arg-type]
                ):
                    j += 1
            n = j - i - 1
            if n == 0:
                parts.append(_go_float(t))
            elif step == 0:
                parts.append(f"{_go_float(t)}x{n}")
            else:
                assert step is not None
                sign = "+" if step > 0 else "-"
                parts.append(f"{_go_float(t)}{sign}{_go_float(abs(step))}x{n}")
        i = j
    return " ".join(parts)


def _series(metric: str, labels: Mapping[str, str]) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{body}}}"


def _alert(s: rules.AlertSettings, name: str) -> rules.Alert:
    return rules.resolved(next(a for a in rules.alerts(s) if a.name == name), s)


class Timeline:
    """A case's series, step by step (step seconds apart), for one list of phases."""

    def __init__(
        self,
        case: Case,
        phases: Sequence[Phase],
        target: Mapping[str, str],
        step: int = 60,
        disabled: tuple[str, ...] = (),
    ) -> None:
        self.target = dict(target)  # the labels of every series of this host
        self.case = case
        alert = next(a for a in rules.alerts(rules.AlertSettings()) if a.name == case.alert)
        blind = alert.blind
        others = (*blind.collectors, *blind.secondary) if blind else ()
        # A collector switched off (--no-collector.X) exports nothing, success included.
        self.others = tuple(c for c in others if c not in disabled)
        self.phases = list(phases)
        self.step = step

    def labels(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self.target, **extra}

    def input_values(self, i: Input) -> list[float | None]:
        out: list[float | None] = []
        total = 0.0
        per_step = self.step / 60
        for phase in self.phases:
            if i.counter:
                total += i.bad * per_step if phase == "bad" else 0
                out.append(total if phase in ("good", "bad") else None)
            elif phase == "bad":
                out.append(i.bad)
            elif phase == "good":
                out.append(i.good)
            else:
                out.append(None)
        return out

    def up_values(self) -> list[float | None]:
        return [None if p == "gone" else 0.0 if p == "down" else 1.0 for p in self.phases]

    def input_series(self) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []

        def add(metric: str, extra: Mapping[str, str], values: Sequence[float | None]) -> None:
            if all(v is None for v in values):
                return
            found.append(
                {
                    "series": _series(metric, self.labels(extra)),
                    "values": _compress(_tokens(values)),
                }
            )

        for i in self.case.inputs:
            add(i.metric, i.labels, self.input_values(i))
        if not any(i.metric == "up" for i in self.case.inputs):
            add("up", {}, self.up_values())
        seen = {
            i.labels["collector"]
            for i in self.case.inputs
            if i.metric == "docker_host_collector_success"
        }
        collector = self.case.collector
        if collector and collector not in seen:
            add(
                "docker_host_collector_success",
                {"collector": collector},
                [
                    None if p in ("down", "unreported", "gone") else 0.0 if p == "fail" else 1.0
                    for p in self.phases
                ],
            )
            seen.add(collector)
        # The other collectors the rule looks through read fine all along.
        for other in self.others:
            if other not in seen:
                seen.add(other)
                add(
                    "docker_host_collector_success",
                    {"collector": other},
                    [None if p in ("down", "gone") else 1.0 for p in self.phases],
                )
        if self.case.capability and "priv" in self.phases:
            add(
                "docker_host_privilege_missing",
                {"collector": collector or "", "capability": self.case.capability},
                [1.0 if p == "priv" else None for p in self.phases],
            )
        if self.case.family:
            add(
                f"docker_host_{self.case.family}_judged",
                {"family": "ipv4"},
                [0.0 if p == "priv" else None if p in BLIND_PHASES else 1.0 for p in self.phases],
            )
        return found


# -- the model: what the rules say at each step ---------------------------------------------


@dataclass
class Model:
    """The expression (live or held), the alert's state and $value, step by step."""

    firing: list[bool]
    value: list[float]


def _window(values: Sequence[float | None], t: int, steps: int) -> list[float]:
    """The samples a range selector [steps] reads at step t, both ends included."""
    return [v for v in values[max(0, t - steps) : t + 1] if v is not None]


def _extrapolated_rate(samples: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Prometheus's rate() on a counter without resets (promql/functions.go)."""
    (t0, v0), (t1, v1) = samples[0], samples[-1]
    result = v1 - v0
    to_start, to_end = t0 - start, end - t1
    sampled = t1 - t0
    average = sampled / (len(samples) - 1)
    if result > 0 and v0 >= 0:
        to_start = min(to_start, sampled * (v0 / result))
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    return result * (interval / sampled) / (end - start)


def live_values(  # noqa: PLR0912 - one branch per kind
    case: Case, s: rules.AlertSettings, tl: Timeline
) -> list[float | None]:
    """The live expression's value at each step (None: it does not hold)."""
    step = tl.step
    flap = int(duration_seconds(s.flap_window)) // step
    first = tl.input_values(case.inputs[0])
    up = tl.up_values()
    out: list[float | None] = []
    for t, phase in enumerate(tl.phases):
        now: float | None = None
        if case.kind in ("flag", "zero", "count"):
            present = [v for v in _window(first, t, flap)]
            bad = [v == case.inputs[0].bad for v in present]
            if phase == "bad":
                now = case.value
            elif case.kind != "count" and first[t] is not None and present:
                share = sum(bad) / len(bad)
                now = share if share >= s.flap_share else None
        elif case.kind == "present":
            if phase == "bad":
                now = case.value
            else:
                mine = len(_window(first, t, flap))
                ups = len(_window(up, t, flap))
                if ups and mine / ups >= s.flap_share:
                    now = mine / ups
        elif case.kind in ("ratio", "now"):
            now = case.value if phase == "bad" else None
        elif case.kind == "zombies":
            window = _window(first, t, int(duration_seconds(s.zombie_window)) // step)
            if window and _quantile(s.zombie_quantile, window) > 0:
                now = _quantile(s.zombie_quantile, window)
        elif case.kind == "success":
            window = _window(first, t, int(duration_seconds(s.collector_success_window)) // step)
            if window and sum(window) / len(window) < s.collector_success_ratio:
                now = sum(window) / len(window)
        elif case.kind in ("increase", "rate"):
            span = 300 // step
            samples = [
                (float(m * step), v)
                for m in range(max(0, t - span), t + 1)
                if (v := first[m]) is not None
            ]
            if len(samples) >= 2:
                rate = _extrapolated_rate(samples, float((t - span) * step), float(t * step))
                if case.kind == "increase" and samples[-1][1] > samples[0][1]:
                    now = rate * 300
                elif case.kind == "rate" and rate > s.conntrack_insert_failed_rate:
                    now = rate
        else:
            raise ValueError(f"unknown kind {case.kind}")
        out.append(now)
    return out


def model(case: Case, s: rules.AlertSettings, tl: Timeline) -> Model:
    """Prometheus's alerting rule (rules/alerting.go) on the expression `live or held`."""
    alert = _alert(s, case.alert)
    step = tl.step
    for_ = int(duration_seconds(alert.for_)) // step
    keep = int(duration_seconds(rules.keep_firing_for(alert, s))) // step
    live = live_values(case, s, tl)
    held_possible = alert.blind is not None
    firing: list[bool] = []
    values: list[float] = []
    state, active_at, keep_since, value = "inactive", 0, -1, 0.0
    judged: float | None = None  # the recorded last verdict taken while judging
    for t, phase in enumerate(tl.phases):
        judging = phase in ("good", "bad") or not held_possible
        if judging:
            judged = live[t]
        # The alert reads the recorded verdict: live while judging; while blind, what fired.
        expr: float | None = judged if judging or firing[-1:] == [True] else None
        if expr is not None:
            value = expr
            keep_since = -1
            if state == "inactive":
                state, active_at = "pending", t
            if state == "pending" and t - active_at >= for_:
                state = "firing"
        elif state == "pending":
            state = "inactive"
        elif state == "firing":
            if keep_since < 0:
                keep_since = t
            if t - keep_since >= keep:
                state, keep_since = "inactive", -1
        firing.append(state == "firing")
        values.append(value)
    return Model(firing, values)


def expected(case: Case, s: rules.AlertSettings, tl: Timeline, value: float) -> dict[str, Any]:
    a = _alert(s, case.alert)
    labels = dict(tl.target)
    labels.update(case.inputs[0].labels if case.labels is None else case.labels)
    return {
        "exp_labels": {"severity": a.severity, **labels},
        "exp_annotations": {
            "summary": render_template(a.summary, labels, value),
            "description": render_template(a.description + rules._where(a), labels, value),
            "runbook_url": f"{s.runbook_url}#{a.name.lower()}",
        },
    }


def check_points(firing: Sequence[bool], every: int) -> list[int]:
    """Every change of state (the step before and the step of it), and regular points."""
    points = set(range(0, len(firing), every)) | {len(firing) - 1}
    for t in range(1, len(firing)):
        if firing[t] != firing[t - 1]:
            points |= {t - 1, t}
    return sorted(points)


def pages(firing: Sequence[bool]) -> int:
    return sum(1 for t, f in enumerate(firing) if f and (t == 0 or not firing[t - 1]))


def _duration(t: int, step: int) -> str:
    seconds = t * step
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def group(
    name: str,
    case: Case,
    s: rules.AlertSettings,
    timelines: Sequence[Timeline],
    want: Callable[[Model], None] | None = None,
) -> dict[str, Any]:
    """A promtool test group: the first timeline's host is checked by the model; every other
    host in it must stay quiet (their faults are absent by construction)."""
    main = timelines[0]
    m = model(case, s, main)
    for other in timelines[1:]:
        assert not any(model(case, s, other).firing), (case.alert, name)
    if want is not None:
        want(m)
    step = main.step
    return {
        "name": f"{case.alert}: {name}",
        "interval": _duration(1, step),
        "input_series": [entry for tl in timelines for entry in tl.input_series()],
        "alert_rule_test": [
            {
                "eval_time": _duration(t, step),
                "alertname": case.alert,
                "exp_alerts": [expected(case, s, main, m.value[t])] if m.firing[t] else [],
            }
            for t in check_points(m.firing, max(1, 600 // step))
        ],
    }


def group_of_hosts(
    name: str, case: Case, s: rules.AlertSettings, timelines: Sequence[Timeline]
) -> dict[str, Any]:
    """A promtool test group in which every host's alert is modelled and checked."""
    models = [model(case, s, tl) for tl in timelines]
    changes = sorted({t for m in models for t in check_points(m.firing, 10)})
    return {
        "name": f"{case.alert}: {name}",
        "interval": "1m",
        "input_series": [entry for tl in timelines for entry in tl.input_series()],
        "alert_rule_test": [
            {
                "eval_time": f"{t}m",
                "alertname": case.alert,
                "exp_alerts": [
                    expected(case, s, tl, m.value[t])
                    for tl, m in zip(timelines, models, strict=True)
                    if m.firing[t]
                ],
            }
            for t in changes
        ],
    }


def renamed_groups(s: rules.AlertSettings) -> list[dict[str, Any]]:
    """A host renamed (a new instance, the old one gone from discovery) with the fault still
    there: the new name pages after its `for`; the old one is held, not resolved, until
    target_memory (DockerHostExporterTargetGone says it left)."""
    out = []
    for case in cases(s):
        if case.alert not in ("DockerHostMasqueradeRuleMissing", "DockerHostDaemonDown"):
            continue
        job = selector_labels(s)
        old = Timeline(case, _phases(("bad", 15), ("gone", 60)), {**job, "instance": "h1"})
        new = Timeline(case, _phases(("gone", 16), ("bad", 59)), {**job, "instance": "h1-renamed"})
        m_old, m_new = model(case, s, old), model(case, s, new)
        assert all(m_old.firing[5:]) and any(m_new.firing), case.alert
        out.append(
            group_of_hosts(
                "a renamed host: the new name pages, the old is held", case, s, [old, new]
            )
        )
    return out


def _phases(*runs: tuple[Phase, int]) -> list[Phase]:
    return [p for p, n in runs for _ in range(n)]


def _fires_once(m: Model) -> None:
    assert pages(m.firing) == 1, "".join("F" if f else "." for f in m.firing)
    assert not m.firing[-1], "resolved by the end"


def _never(m: Model) -> None:
    assert not any(m.firing), m.firing


def _blind_phases(case: Case) -> list[tuple[str, Phase, int]]:
    found: list[tuple[str, Phase, int]] = []
    if case.collector:
        found.append(("holds while the collector fails", "fail", SPELL))
    if case.capability:
        found.append(("holds while a privilege is missing", "priv", SPELL))
    if case.kind != "now" or case.inputs[0].metric != "up":
        found.append(("holds while the exporter is down for over 2 h", "down", LONG_BLIND))
        found.append(("holds while the target is gone from discovery", "gone", LONG_BLIND))
    if case.collector and case.collector == BLIND_COLLECTOR.get(case.alert, case.collector):
        found.append(
            ("holds while the collector has not reported since a restart", "unreported", SPELL)
        )
    return found


def scenarios(
    case: Case, s: rules.AlertSettings, step: int = 60, short: bool = False
) -> list[dict[str, Any]]:
    """Every scenario of a case, at steps of `step` seconds (short: the main ones only)."""
    a = _alert(s, case.alert)
    per = 60 // step  # steps a minute
    for_ = int(duration_seconds(a.for_)) // 60
    keep = int(duration_seconds(rules.keep_firing_for(a, s))) // 60
    slow = max(
        minutes(s.flap_window),
        minutes(s.zombie_window) if case.kind == "zombies" else 0,
        2 * minutes(s.collector_success_window) if case.kind == "success" else 0,
    )
    lead = case.lead
    settle = for_ + slow + 5  # minutes of fault: it fires and its windows fill
    clear = slow + keep + 5  # minutes of good: it resolves
    target = {**selector_labels(s), "instance": INSTANCE}
    sibling_target = {**selector_labels(s), "instance": SIBLING}

    def tl(*runs: tuple[Phase, int], where: Mapping[str, str] = target) -> Timeline:
        return Timeline(case, _phases(*((p, n * per) for p, n in runs)), where, step)

    out: list[dict[str, Any]] = []
    length = lead + settle + clear
    out.append(
        group(
            "fires after its pending window, the healthy sibling does not",
            case,
            s,
            [
                tl(("good", lead), ("bad", length - lead)),
                tl(("good", length), where=sibling_target),
            ],
            _fires,
        )
    )
    out.append(group("quiet without the fault", case, s, [tl(("good", length))], _never))
    out.append(
        group(
            "resolves when the fault is fixed, after keep_firing_for",
            case,
            s,
            [tl(("good", lead), ("bad", settle), ("good", clear))],
            _fires_once,
        )
    )
    for title, phase, spell in _blind_phases(case):
        if short and phase not in ("down", "gone"):
            continue
        if short:
            spell = SPELL  # noqa: PLW2901 - 15 s steps: a shorter spell
            title = title.replace("for over 2 h", f"for {SPELL}m")  # noqa: PLW2901

        def holds(m: Model, spell_at: int = (lead + settle) * per, n: int = spell * per) -> None:
            assert all(m.firing[spell_at : spell_at + n]), case.alert
            _fires_once(m)

        out.append(
            group(
                f"{title}, resolves once it reads the fault gone",
                case,
                s,
                [tl(("good", lead), ("bad", settle), (phase, spell), ("good", clear))],
                holds,
            )
        )
    if short:
        out.append(
            group(
                "a fault in alternating 1-minute windows pages once and resolves once",
                case,
                s,
                [tl(("good", lead), *[("bad", 1), ("good", 1)] * 20, ("good", clear))],
                _fires_once if _flaps(case, for_) else None,
            )
        )
        return out
    if case.inputs[0].metric != "up":
        out.append(
            group(
                "fixed, then the exporter down 20m and restarted silent 3m: stays resolved",
                case,
                s,
                [
                    tl(
                        ("good", lead),
                        ("bad", settle),
                        ("good", clear),
                        ("down", 20),
                        ("unreported", 3),
                        ("good", 60),
                    )
                ],
                _fires_once,
            )
        )
    if for_ > 0 and case.inputs[0].metric != "up":
        out.append(
            group(
                "a lone bad sample, then an outage, never fires",
                case,
                s,
                [tl(("good", lead + 5), ("bad", 1), ("down", 40), ("good", 20))],
                _never,
            )
        )
    if keep > 0:
        runs: list[tuple[Phase, int]] = [("good", lead), ("bad", settle)]
        runs += [("good", 1), ("bad", 4)] * 6
        out.append(
            group(
                "a fault dipping one minute in five stays firing",
                case,
                s,
                [tl(*runs, ("good", clear))],
                _fires_once,
            )
        )
    if for_ > 1:
        runs = [("good", lead)]
        runs += [("bad", 1), ("good", 9)] * 6
        out.append(
            group("a single bad sample every 10 minutes never fires", case, s, [tl(*runs)], _never)
        )
    if _flaps(case, for_):
        for on, off in ((1, 1), (2, 2)):
            out.append(
                group(
                    f"a fault in alternating {on}-minute windows pages once and resolves once",
                    case,
                    s,
                    [
                        tl(
                            ("good", lead),
                            *[("bad", on), ("good", off)] * (40 // (on + off)),
                            ("good", clear),
                        )
                    ],
                    _fires_once,
                )
            )
    blind = _alert(s, case.alert).blind
    for disabled_collector in blind.secondary if blind is not None else ():
        out.append(
            group(
                f"with --no-collector.{disabled_collector}: resolves when the fault is fixed",
                case,
                s,
                [
                    Timeline(
                        case,
                        _phases(("good", lead), ("bad", settle), ("good", clear)),
                        target,
                        disabled=(disabled_collector,),
                    )
                ],
                _fires_once,
            )
        )
    if case.inputs[0].metric != "up":
        out.append(
            group(
                "a DaemonSet rollout (the target gone 2m, back as a new pod) stays one alert",
                case,
                s,
                [tl(("good", lead), ("bad", settle), ("gone", 2), ("bad", 10), ("good", clear))],
                _fires_once,
            )
        )
    return out


def _flaps(case: Case, for_: int) -> bool:
    """Alerts judged by a share of a window: a fault that comes and goes every minute pages."""
    return case.kind in ("flag", "zero", "present", "zombies", "success") and for_ >= 2


def _fires(m: Model) -> None:
    assert any(m.firing), "the model never fires on a lasting fault"


# -- the handover: paging verdicts held blind for longer than blind_hold -----------------------


def handover_groups(s: rules.AlertSettings) -> list[dict[str, Any]]:
    """DockerHostVerdictUnknown: a held critical verdict blind for blind_hold pages once for
    the host, and resolves when the host is judged again; a held warning does not."""
    unknown = _alert(s, "DockerHostVerdictUnknown")
    hold = minutes(s.blind_hold)
    keep = minutes(rules.keep_firing_for(unknown, s))
    target = {**selector_labels(s), "instance": INSTANCE}
    by_name = {c.alert: c for c in cases(s)}
    out = []
    for alert, phase in (
        ("DockerHostMasqueradeRuleMissing", "down"),
        ("DockerHostDnatRuleMissing", "gone"),
        ("DockerHostDaemonDown", "fail"),
    ):
        case = by_name[alert]
        if _alert(s, alert).severity != "critical":
            continue
        start = 20  # the fault fires by then
        blind = hold + 30
        tl = Timeline(
            case,
            _phases(("good", 2), ("bad", start - 2), (phase, blind), ("good", 40)),
            target,
        )
        held = model(case, s, tl)
        assert all(held.firing[start : start + blind]), alert
        labels = dict(target)
        # The count of held critical verdicts at the host: this one.
        fires = start + hold
        back = start + blind
        firing_at = {t: start + 1 + hold <= t < back + keep for t in range(back + 40)}
        checks = sorted(
            {fires - 1, fires + 1, fires + 2, back - 1, back + keep - 1, back + keep, back + 30}
        )
        out.append(
            {
                "name": f"DockerHostVerdictUnknown: {alert} held {phase} past blind_hold",
                "interval": "1m",
                "input_series": tl.input_series(),
                "alert_rule_test": [
                    {
                        "eval_time": f"{t}m",
                        "alertname": "DockerHostVerdictUnknown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": unknown.severity, **labels},
                                "exp_annotations": {
                                    "summary": render_template(unknown.summary, labels, 1),
                                    "description": render_template(unknown.description, labels, 1),
                                    "runbook_url": f"{s.runbook_url}#{unknown.name.lower()}",
                                },
                            }
                        ]
                        if firing_at[t]
                        else [],
                    }
                    for t in checks
                ]
                + [
                    {
                        "eval_time": f"{t}m",
                        "alertname": alert,
                        "exp_alerts": [expected(case, s, tl, held.value[t])],
                    }
                    for t in (start + hold + 5, back - 1)
                ],
            }
        )
    # A warning held as long pages nothing new.
    case = by_name["DockerHostVethOrphaned"]
    tl = Timeline(case, _phases(("good", 2), ("bad", 18), ("down", hold + 30)), target)
    out.append(
        {
            "name": "DockerHostVerdictUnknown: a held warning is not a paging verdict",
            "interval": "1m",
            "input_series": tl.input_series(),
            "alert_rule_test": [
                {"eval_time": f"{t}m", "alertname": "DockerHostVerdictUnknown", "exp_alerts": []}
                for t in (20 + hold + 5, 20 + hold + 25)
            ],
        }
    )
    return out


# -- through the shipped scrape configurations ------------------------------------------------

THROUGH_SCRAPE = ("DockerHostDnatRuleMissing", "DockerHostContainerSharesHostNamespace")


def scrape_groups(s: rules.AlertSettings) -> list[dict[str, Any]]:
    """The series labelled as each shipped scrape configuration (static, file_sd, the
    PodMonitor as the operator makes it) labels them: the alerts name the container, not the
    exporter's pod, and a rollout (a new pod on the same node) is one alert throughout."""
    by_name = {c.alert: c for c in cases(s)}
    out = []
    for config_name, config in scrape.shipped().items():
        target = scrape.target_labels(scrape.discovered(config_name), config)
        later = scrape.target_labels(scrape.discovered(config_name, pod_name="dhe-q9m4t"), config)
        assert target is not None and target == later, (config_name, target, later)
        assert config.get("honor_labels"), f"{config_name}: the exporter's labels must win"
        assert selector_labels(s).items() <= target.items(), (config_name, target)
        for alert in THROUGH_SCRAPE:
            case = by_name[alert]
            lead, settle = 2, 20
            for title, runs in (
                ("fires", (("good", lead), ("bad", settle))),
                ("a rollout", (("good", lead), ("bad", settle), ("gone", 2), ("bad", 10))),
            ):
                tl = Timeline(case, _phases(*runs, ("good", 30)), target)
                out.append(group(f"through {config_name}: {title}", case, s, [tl], _fires_once))
    return out


def render_scrape_tests(s: rules.AlertSettings, rules_file: Path) -> str:
    body = {"rule_files": [str(rules_file)], "evaluation_interval": "1m"}
    return render({**body, "tests": scrape_groups(s)}, "the shipped scrape configurations")


# -- two clusters with one instance name --------------------------------------------------------


def cluster_groups(s: rules.AlertSettings) -> list[dict[str, Any]]:
    """Rules generated with host_labels=cluster,instance: an outage in cluster b does not hold
    (or bring back) a verdict of cluster a's host of the same name."""
    by_name = {c.alert: c for c in cases(s)}
    out = []
    for alert in ("DockerHostMasqueradeRuleMissing", "DockerHostVethOrphaned"):
        case = by_name[alert]
        a = {**selector_labels(s), "cluster": "a", "instance": INSTANCE}
        b = {**selector_labels(s), "cluster": "b", "instance": INSTANCE}
        fixed = Timeline(case, _phases(("bad", 20), ("good", 60)), a)
        down = Timeline(case, _phases(("good", 15), ("down", 65)), b)
        out.append(group("two clusters, one instance name: a fix holds", case, s, [fixed, down]))
        # ...and the other way round: cluster a's outage holds only cluster a's verdict.
        held = Timeline(case, _phases(("bad", 20), ("down", 60)), a)
        fine = Timeline(case, _phases(("good", 80)), b)
        out.append(group("two clusters, one instance name: a hold", case, s, [held, fine]))
    return out


def cluster_settings(s: rules.AlertSettings) -> rules.AlertSettings:
    return dataclasses.replace(s, host_labels="cluster,instance")


def rules_subset(s: rules.AlertSettings, names: Sequence[str]) -> str:
    """The generated rules of these alerts only (with the recordings they read): promtool
    evaluates every rule of its files at every step of every test, so each alert's tests run
    against its own rules, exactly as generated."""
    return rules.dump(subset_groups(rules.rule_groups(s), names))


def subset_groups(everything: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Rule groups ({"groups": [...]}) cut to these alerts and the recordings they read."""
    keep = {*names, *(rules.last_judged(n) for n in names), rules.TARGET_KNOWN}
    groups = []
    for g in everything["groups"]:
        kept = [r for r in g["rules"] if r.get("alert", r.get("record")) in keep]
        if kept:
            groups.append({**g, "rules": kept})
    return {"groups": groups}


def write_all(s: rules.AlertSettings, directory: Path) -> list[Path]:
    """Every test file, each with the rules it needs beside it; returns the test files."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(stem: str, names: Sequence[str], rendered: Callable[[Path], str]) -> None:
        rules_file = directory / f"{stem}.rules.yml"
        rules_file.write_text(rules_subset(s, names))
        test_file = directory / f"{stem}.test.yml"
        test_file.write_text(rendered(rules_file.resolve()))
        written.append(test_file)

    for case in cases(s):
        only = (case.alert,)
        write(case.alert, only, functools.partial(render_tests, s, only=only))
        write(f"{case.alert}-15s", only, functools.partial(render_tests_15s, s, only=only))
    critical = [
        a.name
        for a in rules.alerts(s)
        if a.blind is not None and _alert(s, a.name).severity == "critical"
    ]
    write(
        "DockerHostVerdictUnknown",
        [*critical, "DockerHostVethOrphaned", "DockerHostVerdictUnknown"],
        functools.partial(render_handover_tests, s),
    )
    write("scrape-configs", THROUGH_SCRAPE, functools.partial(render_scrape_tests, s))
    clusters = cluster_settings(s)
    rules_file = directory / "clusters.rules.yml"
    rules_file.write_text(rules_subset(clusters, [c.alert for c in cases(clusters)]))
    test_file = directory / "clusters.test.yml"
    test_file.write_text(render_cluster_tests(s, rules_file.resolve()))
    written.append(test_file)
    return written


def render(body: dict[str, Any], note: str) -> str:
    header = (
        "# Generated by `python -m mixin.alerts --tests-out DIR` from mixin/alert_tests.py: "
        f"{note}\n# (see that module). Hand-written cases: tests/rules/alerts.test.yml.\n"
    )
    return header + rules.dump(body)


def render_tests(s: rules.AlertSettings, rules_file: Path, only: Sequence[str] = ()) -> str:
    """The scenarios of every case (or of the alerts named in only) against rules_file, at
    1-minute scrapes and evaluations."""
    groups = [g for case in cases(s) if not only or case.alert in only for g in scenarios(case, s)]
    groups += [g for g in renamed_groups(s) if not only or g["name"].split(":")[0] in only]
    body = {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": groups}
    return render(body, "every alert's scenarios")


def render_handover_tests(s: rules.AlertSettings, rules_file: Path) -> str:
    body = {"rule_files": [str(rules_file)], "evaluation_interval": "1m"}
    return render({**body, "tests": handover_groups(s)}, "the handover to DockerHostVerdictUnknown")


def render_tests_15s(s: rules.AlertSettings, rules_file: Path, only: Sequence[str] = ()) -> str:
    """The main scenarios again at 15 s scrapes and evaluations, stale markers between."""
    groups = [
        g
        for case in cases(s)
        if not only or case.alert in only
        for g in scenarios(case, s, step=15, short=True)
    ]
    body = {"rule_files": [str(rules_file)], "evaluation_interval": "15s", "tests": groups}
    return render(body, "the main scenarios at 15 s scrapes")


def render_cluster_tests(s: rules.AlertSettings, rules_file: Path) -> str:
    """Against rules generated with host_labels=cluster,instance."""
    body = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": cluster_groups(cluster_settings(s)),
    }
    return render(body, "two clusters with one instance name")
