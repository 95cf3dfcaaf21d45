"""The dashboard pictures' queries and data frames (grafana/render.py) as Grafana's
Prometheus data source makes them; the drawing itself is tested in a real browser by
test_every_panel_of_every_dashboard_draws_data in tests/integration/test_prometheus_e2e.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from grafana.render import (
    bundle_key,
    legend,
    panel_width,
    query_interval,
    range_frames,
    range_text,
    round_interval,
    series_name,
    substitute,
    table_frame,
    time_range,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_range_is_the_dashboards_default() -> None:
    dashboard = {"time": {"from": "now-6h", "to": "now"}}
    assert time_range(dashboard, 100_000.0) == (100_000.0 - 6 * 3600, 100_000.0)
    assert range_text(dashboard) == "Last 6 hours"
    assert range_text({"time": {"from": "now-1m", "to": "now"}}) == "Last 1 minute"
    with pytest.raises(ValueError, match="relative"):
        time_range({"time": {"from": "2026-01-01", "to": "now"}}, 0.0)


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [(900, 1), (24_000, 20), (56_000, 60), (85_000, 60), (14_000, 15), (100_000_000, 86400)],
)
def test_intervals_round_as_grafanas(ms: float, seconds: float) -> None:
    assert round_interval(ms) == seconds


def test_the_step_follows_the_panels_width_and_the_scrape_interval() -> None:
    wide = {"gridPos": {"x": 0, "y": 0, "w": 24, "h": 8}}
    narrow = {"gridPos": {"x": 0, "y": 0, "w": 4, "h": 4}}
    assert panel_width(wide) > 6 * panel_width(narrow)
    assert query_interval(6 * 3600, wide, 1.0) == 15
    assert query_interval(6 * 3600, narrow, 1.0) == 60
    assert query_interval(300, wide, 15.0) == 15  # never below the scrape interval
    assert query_interval(6 * 3600, {**wide, "interval": "2m"}, 1.0) == 120


def test_variables_are_all_and_rate_interval_is_grafanas() -> None:
    expr = 'rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval])'
    assert substitute(expr, 20, 15, 21600) == 'rate(x{job=~".*", instance=~".*"}[60s])'
    assert substitute("[$__rate_interval]", 60, 1, 21600) == "[61s]"
    assert substitute("$__range", 60, 1, 21600) == "21600s"


def test_legends_as_grafana_writes_them() -> None:
    labels = {"__name__": "up", "instance": "a:1", "job": "j"}
    assert legend("{{instance}} {{ job }}", labels) == "a:1 j"
    assert legend("{{missing}}", labels) == ""
    assert series_name(labels) == 'up{instance="a:1", job="j"}'


def test_a_matrix_is_a_frame_per_series_with_the_legend_as_display_name() -> None:
    result = [
        {"metric": {"__name__": "x", "instance": "a"}, "values": [[10, "1"], [20, "NaN"]]},
        {"metric": {"__name__": "x", "tags": ""}, "values": [[10, "+Inf"]]},
    ]
    first, second = range_frames(result, {"refId": "A", "legendFormat": "{{tags}}"}, 10)
    time, value = first["fields"]
    assert time["values"] == [10_000.0, 20_000.0] and time["config"]["interval"] == 10_000
    assert value["values"] == [1.0, None]  # NaN and Inf are gaps, as JSON cannot carry them
    assert value["labels"] == {"__name__": "x", "instance": "a"}
    # An empty legend falls back to the series' name, as Grafana's does.
    assert value["config"]["displayNameFromDS"] == 'x{instance="a"}'
    assert second["fields"][1]["values"] == [None]


def test_a_vector_is_one_table_with_a_column_per_label() -> None:
    result = [
        {"metric": {"__name__": "x", "instance": "b", "k": "1"}, "value": [5, "2"]},
        {"metric": {"__name__": "x", "instance": "a"}, "value": [5, "3.5"]},
    ]
    frame = table_frame(result, {"refId": "A"}, "Value")
    names = [f["name"] for f in frame["fields"]]
    assert names == ["Time", "__name__", "instance", "k", "Value"]
    assert frame["fields"][3]["values"] == ["1", ""]
    assert frame["fields"][4]["values"] == [2.0, 3.5]


def test_the_bundle_key_is_the_one_build_sh_computes() -> None:
    """build.sh hashes the same files in the same order (sha256sum of their concatenation)."""
    script = (ROOT / "grafana" / "pictures" / "build.sh").read_text()
    assert "cat package.json package-lock.json src/main.jsx build.sh | sha256sum | cut -c1-16" in (
        script
    )
    assert len(bundle_key()) == 16
