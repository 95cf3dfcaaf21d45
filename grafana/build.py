"""Builders for the dashboards grafana/generate.py writes: plain Grafana JSON (schemaVersion 39).

A panel is written as PromQL over bare metric names; the builders add everything a reader of
the dashboard needs and a writer would forget:

- scoping: every `docker_host_*` selector gains `job=~"$job", instance=~"$instance"` and, for
  each other variable of the dashboard whose label the family declares, `label=~"$label"`;
- descriptions: the HELP text of every family a panel queries, taken from the exporter's own
  declarations (exporter.metrics.CATALOGUE), so the dashboards cannot drift from the metrics;
- units, thresholds and value mappings on every field, and sorting on tables;
- drill-down links from table cells to the dashboard that explains the object in the cell.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.collectors import all_collectors
from exporter.metrics import CATALOGUE, MetricSpec
from mixin.alerts import AlertSettings
from mixin.settings import (
    SettingsError,
    check_duration,
    from_mapping,
    parse_overrides,
    read_file,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAG = "docker-host-exporter"
# Table cells and variables match any value, the empty one included (a veth with no container).
ALL = ".*"

_FAMILY = re.compile(r"(?<![\w:])(docker_host_[a-z0-9_]+)(\{[^{}]*\})?")


def families() -> dict[str, MetricSpec]:
    """Every family the exporter declares (its collectors' and its own), by the name it is
    exposed under (counters with `_total`); not what a test may declare besides."""
    owners = {collector.name for collector in all_collectors()} | {"exporter"}
    return {s.exposed_name: s for s in CATALOGUE.values() if s.collector in owners}


def names_in(expr: str) -> list[str]:
    """The docker_host_* families an expression reads, in order of appearance."""
    return list(dict.fromkeys(m.group(1) for m in _FAMILY.finditer(expr)))


# --- value mappings and thresholds --------------------------------------------------------


@dataclass(frozen=True)
class Mapping:
    """Grafana value mappings: exact values to text and colour, and what "no value" reads as."""

    values: tuple[tuple[float, str, str], ...]
    ranges: tuple[tuple[float, float | None, str, str], ...] = ()
    null_text: str = ""

    def json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        index = 0
        if self.values:
            options = {}
            for value, text, color in self.values:
                options[f"{value:g}"] = {"text": text, "color": color, "index": index}
                index += 1
            out.append({"type": "value", "options": options})
        for low, high, text, color in self.ranges:
            result = {"text": text, "color": color, "index": index}
            out.append({"type": "range", "options": {"from": low, "to": high, "result": result}})
            index += 1
        if self.null_text:
            result = {"text": self.null_text, "index": index}
            out.append({"type": "special", "options": {"match": "null", "result": result}})
        return out


OK_MISSING = Mapping(((0, "ok", "green"), (1, "missing", "red")), null_text="not judged")
VALID = Mapping(((0, "invalid", "red"), (1, "valid", "green")))
SUCCESS = Mapping(((0, "failed", "red"), (1, "ok", "green")))
YES_GOOD = Mapping(((0, "no", "red"), (1, "yes", "green")))
YES_BAD = Mapping(((0, "no", "green"), (1, "yes", "red")))
DRIFT = Mapping(((0, "in sync", "green"), (1, "drifted", "orange")))
ORPHAN = Mapping(((0, "paired", "green"), (1, "orphaned", "red")), null_text="-")
SPLIT = Mapping(((0, "no", "green"), (1, "split", "red")))


def thresholds(*steps: tuple[float, str], base: str = "green") -> dict[str, Any]:
    """Absolute thresholds: `base` below the first step, then each step's colour from its value."""
    listed: list[dict[str, Any]] = [{"color": base, "value": None}]
    listed += [{"color": color, "value": value} for value, color in steps]
    return {"mode": "absolute", "steps": listed}


BAD_FROM_1 = thresholds((1, "red"))
GOOD_FROM_1 = thresholds((1, "green"), base="red")
NEUTRAL = thresholds(base="text")


# --- drill-down links ---------------------------------------------------------------------


@dataclass(frozen=True)
class Drill:
    """A link from a table cell to the dashboard that explains it, keeping the time range, the
    data source, the job and the row's own instance."""

    uid: str
    variable: str
    title: str

    def json(self) -> dict[str, Any]:
        url = f"/d/{self.uid}?${{__url_time_range}}&${{datasource:queryparam}}&${{job:queryparam}}"
        if self.variable != "instance":
            url += "&var-instance=${__data.fields.instance}"
        url += f"&var-{self.variable}=${{__value.raw}}"
        return {"title": self.title, "url": url, "targetBlank": False}


# --- queries and columns ------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Column:
    """A table column: a label of the result, or a query's value (`ref` set)."""

    field: str = ""  # the label; empty for a value column
    title: str = ""
    ref: str = ""  # the query whose value this is
    unit: str = ""
    mapping: Mapping | None = None
    thresholds: dict[str, Any] | None = None
    link: Drill | None = None
    width: int = 0

    def name(self, single: bool) -> str:
        if not self.ref:
            return self.field
        return "Value" if single else f"Value #{self.ref}"


def label(name: str, title: str = "", link: Drill | None = None, width: int = 0) -> Column:
    return Column(field=name, title=title, link=link, width=width)


def value(
    ref: str,
    title: str,
    unit: str,
    mapping: Mapping | None = None,
    steps: dict[str, Any] | None = None,
    *,
    width: int = 0,
) -> Column:
    return Column(ref=ref, title=title, unit=unit, mapping=mapping, thresholds=steps, width=width)


# --- the dashboard ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A label variable: every value of `label` on `family`, with All meaning any value."""

    label: str
    title: str
    family: str


@dataclass
class Board:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...] = ()
    container_annotations: bool = False
    panels: list[dict[str, Any]] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_height: int = 0

    # layout: left to right, top to bottom, on Grafana's 24-column grid
    def _place(self, width: int, height: int) -> dict[str, int]:
        if self._x + width > 24:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        pos = {"x": self._x, "y": self._y, "w": width, "h": height}
        self._x += width
        self._row_height = max(self._row_height, height)
        return pos

    def _add(self, panel: dict[str, Any]) -> None:
        panel["id"] = len(self.panels) + 1
        self.panels.append(panel)

    def scope(self, expr: str) -> str:
        """Scope every selector to the job, the instances and the variables whose label the
        family has."""
        known = families()

        def scoped(match: re.Match[str]) -> str:
            name, braces = match.group(1), match.group(2) or "{}"
            spec = known.get(name)
            if spec is None:
                raise ValueError(f"{self.uid}: {name} is not a declared metric family")
            matchers = ['job=~"$job"', 'instance=~"$instance"']
            matchers += [
                f'{v.label}=~"${v.label}"' for v in self.variables if v.label in spec.labels
            ]
            inner = braces[1:-1].strip()
            if inner:
                matchers.append(inner)
            return name + "{" + ", ".join(matchers) + "}"

        return _FAMILY.sub(scoped, expr)

    def _targets(self, queries: Sequence[Query], instant: bool) -> list[dict[str, Any]]:
        targets = []
        for i, query in enumerate(queries):
            target: dict[str, Any] = {
                "datasource": DATASOURCE,
                "expr": self.scope(query.expr),
                "refId": chr(65 + i),
            }
            if query.legend:
                target["legendFormat"] = query.legend
            if instant:
                target.update(instant=True, range=False, format="table")
            else:
                target.update(instant=False, range=True)
            targets.append(target)
        return targets

    def row(self, title: str) -> None:
        """A section header across the full width."""
        self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        self._add(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": self._place(24, 1),
                "panels": [],
            }
        )

    def stat(
        self,
        title: str,
        queries: Sequence[Query],
        *,
        unit: str,
        lead: str = "",
        steps: dict[str, Any] = NEUTRAL,
        mapping: Mapping | None = None,
        width: int = 4,
        height: int = 4,
    ) -> None:
        """One value per host (a query aggregated `by (instance)`, legend {{instance}})."""
        self._add(
            {
                "type": "stat",
                "title": title,
                "description": describe(lead, queries),
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "targets": self._targets(queries, instant=False),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "thresholds": steps,
                        "mappings": mapping.json() if mapping else [],
                        "color": {"mode": "thresholds"},
                    },
                    "overrides": [],
                },
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value",
                    "graphMode": "none",
                    "textMode": "value_and_name",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "wideLayout": True,
                },
            }
        )

    def timeseries(
        self,
        title: str,
        queries: Sequence[Query],
        *,
        unit: str,
        lead: str = "",
        width: int = 12,
        height: int = 8,
        steps: dict[str, Any] = NEUTRAL,
        stack: bool = False,
    ) -> None:
        custom: dict[str, Any] = {"fillOpacity": 10, "showPoints": "never", "lineWidth": 1}
        if stack:
            custom["stacking"] = {"mode": "normal", "group": "A"}
        self._add(
            {
                "type": "timeseries",
                "title": title,
                "description": describe(lead, queries),
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "targets": self._targets(queries, instant=False),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "min": 0,
                        "custom": custom,
                        "thresholds": steps,
                        "color": {"mode": "palette-classic"},
                    },
                    "overrides": [],
                },
                "options": {
                    "legend": {
                        "displayMode": "table",
                        "placement": "right",
                        "calcs": ["lastNotNull", "max"],
                        "sortBy": "Last *",
                        "sortDesc": True,
                    },
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
            }
        )

    def table(
        self,
        title: str,
        queries: Sequence[Query],
        columns: Sequence[Column],
        *,
        sort: str,
        descending: bool = True,
        lead: str = "",
        join_on: str = "",
        width: int = 24,
        height: int = 8,
    ) -> None:
        """Instant queries as one table, showing only `columns` in their order, sorted by the
        column titled `sort`. Several queries are joined on the label `join_on` (Grafana's
        joinByField, mode outerTabular: one row per row of the first query, however many
        rows of the others match it); the later queries keep only rows of the first."""
        single = len(queries) == 1
        if not single and not join_on:
            raise ValueError(f"{title}: several queries need join_on")
        # A later query keeps only rows of the first: a rate still has a series for a window
        # after its gauge (the rule, the veth) is gone, and the join would make it a row.
        first = queries[0].expr
        queries = [queries[0]] + [
            Query(f"({q.expr}) and on ({join_on}) ({first})", q.legend) for q in queries[1:]
        ]
        refs = {chr(65 + i) for i in range(len(queries))}
        names = []
        overrides = []
        for column in columns:
            if column.ref and column.ref not in refs:
                raise ValueError(f"{title}: column {column.title} reads query {column.ref}")
            name = column.name(single)
            names.append(name)
            properties: list[dict[str, Any]] = [
                {"id": "displayName", "value": column.title or column.field}
            ]
            if column.unit:
                properties.append({"id": "unit", "value": column.unit})
            if column.mapping:
                properties.append({"id": "mappings", "value": column.mapping.json()})
            if column.mapping or column.thresholds:
                properties.append(
                    {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                )
            if column.thresholds:
                properties.append({"id": "thresholds", "value": column.thresholds})
            if column.link:
                properties.append({"id": "links", "value": [column.link.json()]})
            if column.width:
                properties.append({"id": "custom.width", "value": column.width})
            overrides.append(
                {"matcher": {"id": "byName", "options": name}, "properties": properties}
            )
        titles = [c.title or c.field for c in columns]
        if sort not in titles:
            raise ValueError(f"{title}: sort column {sort} is not shown")
        transformations: list[dict[str, Any]] = []
        if not single:
            transformations.append(
                {"id": "joinByField", "options": {"byField": join_on, "mode": "outerTabular"}}
            )
        transformations += [
            {"id": "filterFieldsByName", "options": {"include": {"names": names}}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {},
                    "indexByName": {n: i for i, n in enumerate(names)},
                    "renameByName": {},
                },
            },
        ]
        self._add(
            {
                "type": "table",
                "title": title,
                "description": describe(lead, queries),
                "datasource": DATASOURCE,
                "gridPos": self._place(width, height),
                "targets": self._targets(queries, instant=True),
                "transformations": transformations,
                "fieldConfig": {
                    "defaults": {
                        "unit": "string",
                        "custom": {
                            "align": "auto",
                            "filterable": True,
                            "cellOptions": {"type": "auto"},
                        },
                        "thresholds": NEUTRAL,
                        "mappings": [],
                    },
                    "overrides": overrides,
                },
                "options": {
                    "showHeader": True,
                    "cellHeight": "sm",
                    "footer": {"show": False, "reducer": ["sum"], "fields": ""},
                    "sortBy": [{"displayName": sort, "desc": descending}],
                },
            }
        )

    def json(self, settings: Settings) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": [TAG],
            "timezone": "browser",
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "time": {"from": settings.time_from, "to": "now"},
            "refresh": settings.refresh,
            "links": [
                {
                    "title": "Docker host dashboards",
                    "type": "dashboards",
                    "tags": [TAG],
                    "asDropdown": False,
                    "includeVars": True,
                    "keepTime": True,
                    "targetBlank": False,
                    "icon": "external link",
                    "tooltip": "",
                    "url": "",
                }
            ],
            "templating": {"list": list(self._variables(settings))},
            "annotations": {"list": list(self._annotations())},
            "panels": self.panels,
        }

    def _variables(self, settings: Settings) -> Iterator[dict[str, Any]]:
        yield {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
        }
        job_query = f"label_values(docker_host_exporter_build_info{{{settings.job_selector}}}, job)"
        yield _query_variable("job", "Job", job_query)
        yield _query_variable(
            "instance",
            "Instance",
            'label_values(docker_host_exporter_build_info{job=~"$job"}, instance)',
        )
        for variable in self.variables:
            query = (
                f'label_values({variable.family}{{job=~"$job", instance=~"$instance"}}, '
                f"{variable.label})"
            )
            yield _query_variable(variable.label, variable.title, query)

    def _annotations(self) -> Iterator[dict[str, Any]]:
        yield {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }
        for note in ANNOTATIONS:
            if note.containers and not self.container_annotations:
                continue
            yield note.json(self.scope(note.expr))


def _query_variable(name: str, title: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": title,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ALL,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


@dataclass(frozen=True)
class Annotation:
    """An event from Prometheus drawn on every graph. With `at_value`, the series' value (a
    Unix time in ms) is when it happened; otherwise it happened while the query returns
    something."""

    name: str
    expr: str
    title: str
    text: str
    color: str
    at_value: bool
    containers: bool = False

    def json(self, expr: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "datasource": DATASOURCE,
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            "expr": expr,
            "step": "1m",
            "titleFormat": self.title,
            "textFormat": self.text,
            "tagKeys": "instance",
            "useValueForTime": self.at_value,
        }


ANNOTATIONS = (
    Annotation(
        "dockerd / containerd started",
        'docker_host_daemon_process_start_time_seconds{process=~"dockerd|containerd"} * 1000',
        "{{process}} started",
        "{{process}} (pid {{pid}}) started on {{instance}}",
        "red",
        at_value=True,
    ),
    Annotation(
        "dockerd reloaded (SIGHUP)",
        "docker_host_daemon_last_reload_timestamp_seconds * 1000",
        "dockerd reloaded its configuration",
        "SIGHUP on {{instance}}",
        "orange",
        at_value=True,
    ),
    Annotation(
        "daemon.json edited",
        "docker_host_daemon_config_file_modified_timestamp_seconds * 1000",
        "daemon.json modified",
        "configuration file modified on {{instance}}",
        "yellow",
        at_value=True,
    ),
    Annotation(
        "containers started",
        "docker_host_container_pid1_start_time_seconds * 1000",
        "{{container}} started",
        "container {{container}} started on {{instance}}",
        "green",
        at_value=True,
        containers=True,
    ),
    Annotation(
        "containers stopped",
        # A PID 1 seen in the last minute and gone now, while the processes collector still reports:
        # an exporter that stops scraping does not stop every container.
        "(last_over_time(docker_host_container_pid1_start_time_seconds[1m]) unless on"
        " (instance, container) docker_host_container_pid1_start_time_seconds) and on (instance)"
        ' (docker_host_collector_success{collector="processes"} == 1)',
        "{{container}} stopped",
        "container {{container}} stopped or removed on {{instance}}",
        "purple",
        at_value=False,
        containers=True,
    ),
)


def describe(lead: str, queries: Iterable[Query]) -> str:
    """The panel's own sentence, then the HELP of every family it reads."""
    known = families()
    parts = [lead] if lead else []
    for name in names_in(" ".join(q.expr for q in queries)):
        parts.append(f"{name}: {known[name].help}")
    return "\n\n".join(parts)


# --- settings -----------------------------------------------------------------------------


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _as_in_the_alerts(name: str) -> Any:
    """A setting the alert rules take too: their default and help, one source for both."""
    shared = next(f for f in dataclasses.fields(AlertSettings) if f.name == name)
    return field(default=shared.default, metadata=shared.metadata)


@dataclass(frozen=True)
class Settings:
    """What a user may change without editing code (mixin/settings.py: `--settings FILE`,
    `--set key=value`, `--list-settings`); an unknown or bad one stops the generator."""

    job_selector: str = _as_in_the_alerts("job_selector")
    host_namespaces: str = _as_in_the_alerts("host_namespaces")
    time_from: str = field(
        default="now-6h", metadata=_help("the default time range's start, now-<duration>")
    )
    refresh: str = field(default="30s", metadata=_help("how often Grafana refreshes, a duration"))

    def __post_init__(self) -> None:
        if not self.job_selector.strip() or any(c in self.job_selector for c in "{}`"):
            raise SettingsError(
                "setting job_selector: wants label matchers without braces or backticks, like "
                'job="docker-host-exporter"'
            )
        if not self.time_from.startswith("now-"):
            raise SettingsError(f"setting time_from: wants now-<duration>, got {self.time_from!r}")
        check_duration("time_from", self.time_from.removeprefix("now-"))
        check_duration("refresh", self.refresh)
        try:
            re.compile(self.host_namespaces)
        except re.error as exc:
            raise SettingsError(f"setting host_namespaces: not a regex: {exc}") from None


def load_settings(path: str | None, overrides: Sequence[str]) -> Settings:
    """Settings from a file and `key=value` overrides, as mixin/settings.py reads them. One file
    may serve the alert rules too: their own keys are checked as the alert generator checks
    them, then left to it; a key neither generator knows is refused."""
    values: dict[str, Any] = dict(read_file(path)) if path else {}
    values.update(parse_overrides(overrides))
    mine = {f.name for f in dataclasses.fields(Settings)}
    alerts = {f.name for f in dataclasses.fields(AlertSettings)}
    theirs = alerts - mine
    unknown = sorted(set(values) - mine - theirs)
    if unknown:
        raise SettingsError(
            f"{path or 'settings'}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; known: {', '.join(sorted(mine))} (and the alert rules' "
            f"{', '.join(sorted(theirs))})"
        )
    from_mapping(AlertSettings, {k: v for k, v in values.items() if k in alerts})
    return from_mapping(Settings, {k: v for k, v in values.items() if k in mine})
