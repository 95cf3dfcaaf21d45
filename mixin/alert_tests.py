"""promtool tests for every alert, generated from a description of its fault: which series show
it (bad and good values), which collector and privilege hide it, and how long its expression
takes to hold and to clear. From that, the same scenarios for every alert:

- fires: the fault from minute `lead` on; a sibling host with good values stays quiet, and one
  minute before `for` has passed nothing fires (the pending window);
- quiet: no fault anywhere (the series good, or absent where good means absent);
- resolves: the fault fixed (good values, the collector reading): still up for keep_firing_for,
  then gone;
- collector fails: the series go stale and collector_success is 0 for an hour: still firing,
  and resolved once the collector reads again and the fault is gone;
- privilege lost: the series go stale and privilege_missing is 1 (NAT: docker_host_nat_judged
  0): still firing;
- exporter down: every series of the host stale, up 0: still firing;
- collector not reported yet: the exporter back (up 1) before its collector's first run (no
  collector_success, no series): still firing;
- flapping: after firing, the fault dips one minute in five: still firing at every dip; a single
  bad sample every ten minutes never fires (where `for` > 0); and, where the issue asked, a
  fault that flaps from its start fires.

The expected annotations are the rules' templates filled in here (labels, $value, humanize),
independently of promtool, which renders them from the generated rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixin import alerts as rules
from mixin.settings import duration_seconds

INSTANCE, SIBLING = "h1", "h2"
BLIND_PHASES = ("fail", "priv", "down", "unreported")
# Alerts whose Case.collector is not the one their rule looks through by name (held on any
# collector failing, or on the alert's own collector label): no "not reported" scenario.
BLIND_COLLECTOR = {"DockerHostPrivilegeMissing": "", "DockerHostSeriesDropped": ""}
MATCHER = re.compile(r'\s*(\w+)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


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


SPELL = 30  # a blind spell: longer than every `for` and keep_firing_for, shorter than blind_hold

Phase = str  # good | bad | fail | priv | down | unreported
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
    collector: str | None = None  # whose failure hides the inputs; None: no such scenario
    capability: str | None = None  # whose loss hides them; None: no such scenario
    nat_family: str | None = None
    lead: int = 0  # minutes of good values before the fault
    onset: int = 0  # minutes from the fault's start until the expression holds
    clears: int = 0  # minutes from the fix until it no longer holds
    settle: int = 3  # minutes of fault after firing, before the fix
    value: float = 1.0  # $value while live
    held_value: float | None = None  # $value while held (default: value)
    avg_window: int | None = None  # $value is avg_over_time of the first input, this window
    flap_from_start: tuple[int, int] | None = None  # (bad, good) minutes from the start...
    flap_fires_after: int = 0  # ...firing this many minutes after the fault starts


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
    win = minutes(s.collector_success_window)
    # Consecutive failed runs before avg_over_time(success[window]) < ratio (the window holds
    # window+1 samples a minute apart, both ends included, in Prometheus 2.x).
    samples = win + 1
    failed_to_alert = next(
        z for z in range(samples + 1) if (samples - z) / samples < s.collector_success_ratio
    )
    passed_to_clear = next(
        o for o in range(samples + 1) if o / samples >= s.collector_success_ratio
    )
    zwin = minutes(s.zombie_window) + 1
    zombie_clear = next(
        z
        for z in range(zwin + 1)
        if _quantile(s.zombie_quantile, [0.0] * z + [3.0] * (zwin - z)) == 0
    )
    return [
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
            "network",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostMasqueradeRuleMissing",
            (Input("docker_host_nat_masquerade_missing", {**nat_missing, "family": "ipv4"}, 1, 0),),
            "nat",
            "CAP_NET_ADMIN",
            nat_family="ipv4",
        ),
        Case(
            "DockerHostDnatRuleMissing",
            (
                Input(
                    "docker_host_nat_dnat_missing",
                    {
                        "container": "web",
                        "protocol": "tcp",
                        "host_port": "8080",
                        "container_port": "80",
                        "family": "ipv4",
                    },
                    1,
                    0,
                ),
            ),
            "nat",
            "CAP_NET_ADMIN",
            nat_family="ipv4",
        ),
        Case(
            "DockerHostPublishedPortBroken",
            (Input("docker_host_published_port_broken", {**port, "hop": "forward"}, 1, None),),
            "ports",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostPublishedPortNotListening",
            (Input("docker_host_published_port_broken", {**port, "hop": "listener"}, 1, None),),
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
            "firewall",
            "CAP_NET_ADMIN",
            nat_family="ipv4",
        ),
        Case(
            "DockerHostIPForwardingOff",
            (
                Input("docker_host_ip_forward", {"family": "ipv4"}, 0, 1),
                Input(
                    "docker_host_filter_rule_missing",
                    {"family": "ipv4", "network": "app", "rule": "established"},
                    0,
                    0,
                ),
            ),
            "firewall",
            "CAP_NET_ADMIN",
            nat_family="ipv4",
            value=0,
        ),
        Case(
            "DockerHostNatRulesSplitAcrossBackends",
            (Input("docker_host_nat_rules_split_across_backends", {}, 1, 0),),
            "nat",
            "CAP_NET_ADMIN",
        ),
        # A refused privilege is DockerHostPrivilegeMissing's: no privilege scenario here.
        Case(
            "DockerHostNatBackendUnreadable",
            (Input("docker_host_nat_backend_readable", {"backend": "legacy"}, 0, 1),),
            "nat",
            value=0,
        ),
        Case(
            "DockerHostDaemonDown",
            (Input("docker_host_daemon_processes", {"process": "dockerd"}, 0, 1),),
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
            "daemon",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostDaemonFlagConflict",
            (Input("docker_host_daemon_config_flag_conflict", {"key": "storage-driver"}, 1, 0),),
            "daemon",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostDaemonConfigInvalid",
            (Input("docker_host_daemon_config_file_valid", {}, 0, 1),),
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
            "processes",
            "CAP_SYS_PTRACE",
        ),
        # A container with zombies from its first sample: the quantile holds at once. Fixed,
        # it clears once enough of the window is 0 (the window full of bad samples first).
        Case(
            "DockerHostZombieProcesses",
            (Input("docker_host_container_zombie_processes", {"container": "leaky"}, 3, 0),),
            "processes",
            "CAP_SYS_PTRACE",
            clears=zombie_clear - 1,
            settle=zwin,
            value=3,
            flap_from_start=(9, 1),  # touches 0 once every 10 minutes: fires all the same
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
            "processes",
            "CAP_SYS_PTRACE",
        ),
        Case(
            "DockerHostConntrackTableFilling",
            (
                Input("docker_host_conntrack_entries", {}, 900, 100),
                Input("docker_host_conntrack_entries_limit", {}, 1000, 1000),
            ),
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
            "conntrack",
            "CAP_NET_ADMIN",
            value=0.98,
        ),
        # Counters: the fault is an increase; fixed, the 5m window empties of it in 4 minutes.
        Case(
            "DockerHostConntrackInsertFailing",
            (Input("docker_host_conntrack_stat_insert_failed_total", {}, 10, 0, counter=True),),
            "conntrack",
            "CAP_NET_ADMIN",
            lead=5,
            clears=4,
        ),
        Case(
            "DockerHostConntrackDropping",
            (Input("docker_host_conntrack_stat_drop_total", {}, 10, 0, counter=True),),
            "conntrack",
            "CAP_NET_ADMIN",
            lead=5,
            clears=4,
        ),
        # Its own collector failing is the fault: the exporter down is what could hide it.
        Case(
            "DockerHostCollectorFailing",
            (Input("docker_host_collector_success", {"collector": "nat"}, 0, 1),),
            lead=2 * win,
            onset=failed_to_alert - 1,
            clears=passed_to_clear - 1,
            settle=win + 1,
            held_value=0,
            avg_window=win,
            flap_from_start=(1, 1),  # fails every other run
            flap_fires_after=2 * failed_to_alert - 2 + minutes("5m"),
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
            "nat",
        ),
        Case(
            "DockerHostSeriesDropped",
            (Input("docker_host_series_dropped", {"family": "docker_host_veth_info"}, 12, None),),
            "network",
            value=12,
        ),
        Case("DockerHostExporterDown", (Input("up", {}, 0, 1),), value=0),
    ]


# Alerts whose scenarios do not fit the pattern above: tested in tests/rules/alerts.test.yml.
BY_HAND = {
    "DockerHostExporterTargetGone": "its fault is a series vanishing, not a value",
    "DockerHostExporterAbsent": "it has no instance: no target exists to name",
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
    return f"{v:.4g}"


def render_template(template: str, labels: Mapping[str, str], value: float) -> str:
    """The few template forms the rules use. A `range ... query` finds nothing here: the
    generated tests hold no per-container conntrack series."""
    text = re.sub(r"\{\{ range .*\{\{ end \}\}", "", template, flags=re.S)
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    text = text.replace("{{ $value | humanizePercentage }}", _humanize(value * 100) + "%")
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


class Timeline:
    """A case's series, minute by minute, for one list of phases."""

    def __init__(
        self, case: Case, phases: Sequence[Phase], job: Mapping[str, str], instance: str = INSTANCE
    ) -> None:
        self.job = job
        self.case = case
        alert = next(a for a in rules.alerts(rules.AlertSettings()) if a.name == case.alert)
        self.others = alert.blind.collectors if alert.blind else ()
        self.phases = list(phases)
        self.instance = instance

    def labels(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self.job, "instance": self.instance, **extra}

    def input_values(self, i: Input) -> list[float | None]:
        out: list[float | None] = []
        total = 0.0
        for phase in self.phases:
            if i.counter:
                total += i.bad if phase == "bad" else 0
                out.append(total if phase in ("good", "bad") else None)
            elif phase == "bad":
                out.append(i.bad)
            elif phase == "good":
                out.append(i.good)
            else:
                out.append(None)
        return out

    def input_series(self) -> list[dict[str, str]]:
        found: list[dict[str, str]] = []
        metrics = {(i.metric, tuple(sorted(i.labels.items()))) for i in self.case.inputs}

        def add(metric: str, extra: Mapping[str, str], values: list[float | None]) -> None:
            if (metric, tuple(sorted(extra.items()))) in metrics and metric != "up":
                return
            if metric == "up" and any(i.metric == "up" for i in self.case.inputs):
                return
            if all(v is None for v in values):
                return
            found.append(
                {
                    "series": _series(metric, self.labels(extra)),
                    "values": _compress(_tokens(values)),
                }
            )

        for i in self.case.inputs:
            values = self.input_values(i)
            if not all(v is None for v in values):
                found.append(
                    {
                        "series": _series(i.metric, self.labels(i.labels)),
                        "values": _compress(_tokens(values)),
                    }
                )
        add("up", {}, [0.0 if p == "down" else 1.0 for p in self.phases])
        collector = self.case.collector or self.case.inputs[0].labels.get("collector")
        if collector:
            add(
                "docker_host_collector_success",
                {"collector": collector},
                [
                    None if p in ("down", "unreported") else 0.0 if p == "fail" else 1.0
                    for p in self.phases
                ],
            )
        # The other collectors the rule looks through read fine all along.
        for other in self.others:
            if other != collector:
                add(
                    "docker_host_collector_success",
                    {"collector": other},
                    [None if p == "down" else 1.0 for p in self.phases],
                )
        if self.case.capability and "priv" in self.phases:
            add(
                "docker_host_privilege_missing",
                {"collector": collector or "", "capability": self.case.capability},
                [1.0 if p == "priv" else None for p in self.phases],
            )
        if self.case.nat_family:
            add(
                "docker_host_nat_judged",
                {"family": self.case.nat_family},
                [
                    0.0 if p == "priv" else None if p in ("fail", "down") else 1.0
                    for p in self.phases
                ],
            )
        return found

    def value_at(self, t: int, ratio: float) -> float:
        """$value at minute t: live, held, or kept from its last live evaluation."""
        case = self.case
        held = case.held_value if case.held_value is not None else case.value
        if case.avg_window is None:
            return held if self.phases[t] in BLIND_PHASES else case.value
        first = self.input_values(case.inputs[0])
        value = case.value
        for m in range(t + 1):
            if self.phases[m] in BLIND_PHASES:
                value = held
                continue
            window = [v for v in first[max(0, m - case.avg_window) : m + 1] if v is not None]
            if window and sum(window) / len(window) < ratio:
                value = sum(window) / len(window)
        return value


def expected(case: Case, s: rules.AlertSettings, timeline: Timeline, t: int) -> dict[str, Any]:
    alert = next(a for a in rules.alerts(s) if a.name == case.alert)
    a = rules.resolved(alert, s)
    labels = {**timeline.job, "instance": timeline.instance}
    for i in case.inputs[:1]:
        labels.update(i.labels)
    value = timeline.value_at(t, s.collector_success_ratio)
    return {
        "exp_labels": {"severity": a.severity, **labels},
        "exp_annotations": {
            "summary": render_template(a.summary, labels, value),
            "description": render_template(a.description + rules._where(a), labels, value),
            "runbook_url": f"{s.runbook_url}#{a.name.lower()}",
        },
    }


def _group(
    name: str,
    timelines: Sequence[Timeline],
    checks: Sequence[tuple[int, bool]],
    case: Case,
    s: rules.AlertSettings,
) -> dict[str, Any]:
    main = timelines[0]
    series = [entry for tl in timelines for entry in tl.input_series()]
    return {
        "name": f"{case.alert}: {name}",
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {
                "eval_time": f"{t}m",
                "alertname": case.alert,
                "exp_alerts": [expected(case, s, main, t)] if firing else [],
            }
            for t, firing in checks
        ],
    }


def scenarios(case: Case, s: rules.AlertSettings) -> list[dict[str, Any]]:  # noqa: PLR0912, PLR0915
    alert = rules.resolved(next(a for a in rules.alerts(s) if a.name == case.alert), s)
    for_ = minutes(alert.for_)
    keep = minutes(rules.keep_firing_for(alert, s))
    lead, onset = case.lead, case.onset
    job = selector_labels(s)
    fires = lead + onset + for_  # the first minute it fires
    fixed = fires + case.settle  # the first minute of the fix
    gone = fixed + case.clears + keep  # the first minute it is resolved
    no_fault: Phase = "good"
    out: list[dict[str, Any]] = []

    def phases(*runs: tuple[Phase, int]) -> list[Phase]:
        return [p for p, n in runs for _ in range(n)]

    end = gone + 5
    sibling = Timeline(case, phases((no_fault, end + 1)), job, SIBLING)
    tl = Timeline(case, phases((no_fault, lead), ("bad", end + 1 - lead)), job)
    checks = [(fires, True), (end, True)]
    if fires >= 1:
        checks.insert(0, (fires - 1, False))
    out.append(
        _group(
            "fires after its pending window, the healthy sibling does not",
            [tl, sibling],
            checks,
            case,
            s,
        )
    )

    quiet = Timeline(case, phases((no_fault, end + 1)), job)
    out.append(_group("quiet without the fault", [quiet], [(fires, False), (end, False)], case, s))

    tl = Timeline(
        case, phases((no_fault, lead), ("bad", fixed - lead), (no_fault, gone + 5 - fixed)), job
    )
    checks = [(fires, True), (gone, False), (gone + 5, False)]
    if gone - 1 >= fixed:
        checks.insert(1, (gone - 1, True))
    out.append(
        _group("resolves when the fault is fixed, after keep_firing_for", [tl], checks, case, s)
    )

    blind: list[tuple[str, Phase]] = []
    if case.collector:
        blind.append(("holds while the collector fails", "fail"))
    if case.capability:
        blind.append(("holds while a privilege is missing", "priv"))
    if case.collector or case.inputs[0].metric != "up":
        blind.append(("holds while the exporter is down", "down"))
    if case.collector and case.collector == BLIND_COLLECTOR.get(case.alert, case.collector):
        blind.append(("holds while the collector has not reported since a restart", "unreported"))
    spell = min(SPELL, minutes(s.blind_hold) - 1)
    for title, phase in blind:
        back = fixed + spell
        recovered = back + case.clears + keep
        tl = Timeline(
            case,
            phases(
                (no_fault, lead),
                ("bad", fixed - lead),
                (phase, spell),
                (no_fault, recovered + 5 - back),
            ),
            job,
        )
        checks = [(fixed, True), (fixed + 30, True), (back - 1, True), (recovered, False)]
        out.append(_group(f"{title}, resolves once it reads the fault gone", [tl], checks, case, s))

    if keep > 0:
        runs: list[tuple[Phase, int]] = [(no_fault, lead), ("bad", fires + 1 - lead)]
        dips = []
        for _ in range(6):
            dips.append(sum(n for _, n in runs))
            runs += [(no_fault, 1), ("bad", 4)]
        tl = Timeline(case, phases(*runs), job)
        out.append(
            _group(
                "a fault dipping one minute in five stays firing",
                [tl],
                [(d, True) for d in dips],
                case,
                s,
            )
        )
    if for_ > 1:
        runs = [(no_fault, lead)]
        for _ in range(6):
            runs += [("bad", 1), (no_fault, 9)]
        tl = Timeline(case, phases(*runs), job)
        ends = sum(n for _, n in runs) - 1
        out.append(
            _group(
                "a single bad sample every 10 minutes never fires",
                [tl],
                [(t, False) for t in range(lead, ends, 5)],
                case,
                s,
            )
        )
    if case.flap_from_start:
        bad, good = case.flap_from_start
        runs = [(no_fault, lead)]
        for _ in range(40 // (bad + good) + 1):
            runs += [("bad", bad), (no_fault, good)]
        tl = Timeline(case, phases(*runs), job)
        at = lead + case.flap_fires_after if case.flap_fires_after else lead + onset + for_
        out.append(
            _group(
                f"flapping from the start ({bad}m bad, {good}m good) fires",
                [tl],
                [(at - 1, False), (at, True), (at + 20, True)],
                case,
                s,
            )
        )
    return out


def render_tests(s: rules.AlertSettings, rules_file: Path, only: Sequence[str] = ()) -> str:
    """The scenarios of every case (or of the alerts named in only) against rules_file."""
    groups = [g for case in cases(s) if not only or case.alert in only for g in scenarios(case, s)]
    body = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": groups,
    }
    header = (
        "# Generated by `python -m mixin.alerts --tests-out DIR` from mixin/alert_tests.py: every\n"
        "# alert's scenarios (see that module). Hand-written cases: tests/rules/alerts.test.yml.\n"
    )
    return header + rules.dump(body)
