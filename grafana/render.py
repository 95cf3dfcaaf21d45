"""Draws each dashboard as Grafana would show it, from a real Prometheus, into one PNG per
dashboard for the README: no Grafana server runs here (it is AGPL and in no registry we reach),
so Grafana's own panel components (@grafana/ui and @grafana/data, Apache-2.0, bundled from
grafana/pictures/ by grafana/pictures/build.sh) draw the panels in headless Chromium.

    python grafana/render.py --prometheus http://127.0.0.1:9090 --out docs/img

This side asks Prometheus what Grafana's Prometheus data source would ask for the dashboard's
default time range (range queries with Grafana's step, instant queries for tables) and shapes
the answers as Grafana's data frames; the page (grafana/pictures/src/main.jsx) applies the
panels' transformations, units, mappings, thresholds and overrides and lays them out on the
dashboard's 24-column grid. The page reports what each panel drew (rows or points, "No data",
errors), which tests/integration/test_prometheus_e2e.py checks
(test_every_panel_of_every_dashboard_draws_data).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "pictures"
# Where scripts/testbed.sh (through grafana/pictures/build.sh) leaves the bundle.
DEFAULT_CACHE = Path("/var/cache/docker-host-exporter/pictures")
WIDTH = 1600  # CSS pixels: a laptop's browser window, wide enough for the tables' columns
GRID_COLUMNS, ROW, GAP, PADDING = 24, 30, 8, 16  # Grafana's grid, as main.jsx lays it out
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
# Grafana's rounding of a query interval (rangeutil.roundInterval): limit in ms -> interval in s.
ROUNDED = [
    (1500, 1), (3500, 2), (7500, 5), (12500, 10), (17500, 15), (25000, 20), (45000, 30),
    (90000, 60), (210000, 120), (450000, 300), (750000, 600), (1050000, 900),
    (1500000, 1200), (2700000, 1800), (5400000, 3600), (9000000, 7200),
    (16200000, 10800), (32400000, 21600), (86400000, 43200),
]  # fmt: skip


HIDDEN_VARIABLE = 2  # a template variable's "hide" that Grafana shows no picker for


class PicturesError(RuntimeError):
    """The page could not be drawn: no bundle, or the page failed."""


@dataclass(frozen=True)
class PanelDrawn:
    """What the page says one panel drew."""

    id: int
    title: str
    type: str
    count: int  # rows for a table, values for a stat or time series
    no_data: bool
    error: str | None
    text: str  # the panel's visible text (titles, legends, cells, values)
    instances: tuple[str, ...]  # the instances its data came from (label or column)


@dataclass(frozen=True)
class Picture:
    path: Path
    uid: str
    panels: tuple[PanelDrawn, ...]


def bundle_key() -> str:
    """Names the bundle built from these sources; build.sh computes the same."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json", "src/main.jsx", "build.sh"):
        digest.update((SOURCES / name).read_bytes())
    return digest.hexdigest()[:16]


def bundle_path(cache: Path | None = None) -> Path:
    cache = cache or Path(os.environ.get("DHE_PICTURES_CACHE") or DEFAULT_CACHE)
    path = cache / bundle_key() / "pictures.js"
    if not path.is_file():
        raise PicturesError(
            f"no bundle at {path}: scripts/testbed.sh builds it (grafana/pictures/build.sh, "
            "which runs `npm ci` and esbuild; DHE_PICTURES_CACHE chooses where)"
        )
    return path


def seconds(text: str) -> float:
    """'6h', '15m', '30s' -> seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdwy])", text.strip())
    if not match:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def time_range(dashboard: dict[str, Any], now: float) -> tuple[float, float]:
    """The dashboard's default range, 'now-6h' to 'now' (relative ranges only)."""
    span = dashboard.get("time") or {"from": "now-6h", "to": "now"}

    def at(text: str) -> float:
        if text == "now":
            return now
        if text.startswith("now-"):
            return now - seconds(text.removeprefix("now-"))
        raise ValueError(f"only relative time ranges are drawn, not {text!r}")

    return at(span["from"]), at(span["to"])


def range_text(dashboard: dict[str, Any]) -> str:
    span = dashboard.get("time") or {"from": "now-6h", "to": "now"}
    match = re.fullmatch(r"now-(\d+)([smhdwy])", span["from"])
    if span["to"] != "now" or not match:
        return f"{span['from']} to {span['to']}"
    count, unit = int(match.group(1)), match.group(2)
    word = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "y": "year"}
    return f"Last {count} {word[unit]}{'s' if count != 1 else ''}"


def round_interval(ms: float) -> float:
    for limit, interval in ROUNDED:
        if ms <= limit:
            return interval
    return 86400


def panel_width(panel: dict[str, Any], width: int = WIDTH) -> float:
    cell = (width - 2 * PADDING + GAP) / GRID_COLUMNS
    return float(panel["gridPos"]["w"] * cell - GAP)


def query_interval(span: float, panel: dict[str, Any], scrape: float) -> float:
    """Grafana's $__interval: the range over the panel's width in pixels (its maxDataPoints),
    rounded, and never below the data source's scrape interval or the panel's own minimum."""
    points = panel.get("maxDataPoints") or max(int(panel_width(panel)), 1)
    low = seconds(panel["interval"]) if panel.get("interval") else scrape
    return max(round_interval(span * 1000 / points), low)


def substitute(expr: str, interval: float, scrape: float, span: float) -> str:
    """Grafana's variables as the dashboard opens: every template variable at "All" (.*)."""
    rate = max(interval + scrape, 4 * scrape)
    fixed = {
        "__rate_interval": f"{rate:.0f}s",
        "__interval": f"{interval:.0f}s",
        "__interval_ms": f"{interval * 1000:.0f}",
        "__range": f"{span:.0f}s",
        "__range_s": f"{span:.0f}",
        "__range_ms": f"{span * 1000:.0f}",
    }
    return re.sub(
        r"\$\{(\w+)(?::\w+)?\}|\$(\w+)",
        lambda m: fixed.get(m.group(1) or m.group(2), ".*"),
        expr,
    )


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: {{label}} replaced, a label the series lacks gives ''."""
    return re.sub(r"\{\{\s*(.+?)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def series_name(labels: dict[str, str]) -> str:
    """What Grafana shows for a series with no legendFormat: name{label="value", ...}."""
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{rest}}}"


def number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) or math.isinf(value) else value


def range_frames(result: list[Any], target: dict[str, Any], step: float) -> list[Any]:
    """A matrix as Grafana's Prometheus data source gives it: a frame per series, a Time field
    and a Value field carrying the series' labels and the legend as its display name."""
    frames = []
    template = target.get("legendFormat") or ""
    for series in result:
        labels = series["metric"]
        name = legend(template, labels) if template and template != "__auto" else None
        frames.append(
            {
                "refId": target["refId"],
                "fields": [
                    {
                        "name": "Time",
                        "type": "time",
                        "config": {"interval": step * 1000},
                        "values": [float(t) * 1000 for t, _ in series["values"]],
                    },
                    {
                        "name": "Value",
                        "type": "number",
                        "labels": labels,
                        "config": {"displayNameFromDS": name or series_name(labels)},
                        "values": [number(v) for _, v in series["values"]],
                    },
                ],
            }
        )
    return frames


def table_frame(result: list[Any], target: dict[str, Any], value_name: str) -> dict[str, Any]:
    """A vector as Grafana's table format gives it: one row per series, a Time column, a column
    per label (sorted by name), and the value."""
    keys = sorted({k for series in result for k in series["metric"]})
    return {
        "refId": target["refId"],
        "meta": {"preferredVisualisationType": "table"},
        "fields": [
            {
                "name": "Time",
                "type": "time",
                "values": [float(s["value"][0]) * 1000 for s in result],
            },
            *(
                {"name": k, "type": "string", "values": [s["metric"].get(k, "") for s in result]}
                for k in keys
            ),
            {
                "name": value_name,
                "type": "number",
                "values": [number(s["value"][1]) for s in result],
            },
        ],
    }


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def api(self, path: str, **params: str) -> list[Any]:
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (a URL we were given)
            body = json.load(response)
        if body.get("status") != "success":
            raise PicturesError(f"{url}: {body}")
        result: list[Any] = body["data"]["result"]
        return result


def panel_frames(
    prom: Prometheus, panel: dict[str, Any], start: float, end: float, scrape: float
) -> dict[str, Any]:
    """The frames one panel's queries give, or the error Grafana would show on it."""
    span = end - start
    step = query_interval(span, panel, scrape)
    targets = [t for t in panel.get("targets", []) if t.get("expr") and not t.get("hide")]
    tables = [t for t in targets if t.get("format") == "table"]
    frames: list[Any] = []
    try:
        for target in targets:
            expr = substitute(target["expr"], step, scrape, span)
            if target.get("format") == "table" or target.get("instant"):
                result = prom.api("query", query=expr, time=f"{end:.3f}")
                if target.get("format") == "table":
                    name = f"Value #{target['refId']}" if len(tables) > 1 else "Value"
                    # An empty answer is no frame at all, as Grafana's data source gives it.
                    frames += [table_frame(result, target, name)] if result else []
                else:
                    matrix = [{**s, "values": [s["value"]]} for s in result]
                    frames += range_frames(matrix, target, step)
            else:
                # Grafana aligns both ends down to the step: the last point is up to a step old.
                result = prom.api(
                    "query_range",
                    query=expr,
                    start=f"{math.floor(start / step) * step:.0f}",
                    end=f"{math.floor(end / step) * step:.0f}",
                    step=f"{step:g}",
                )
                frames += range_frames(result, target, step)
    except (OSError, PicturesError, ValueError) as error:
        return {"frames": [], "error": str(error)}
    return {"frames": frames}


def variables(dashboard: dict[str, Any]) -> list[dict[str, str]]:
    shown = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("hide") == HIDDEN_VARIABLE:
            continue
        text = "Prometheus" if var.get("type") == "datasource" else "All"
        shown.append({"name": var["name"], "label": var.get("label") or var["name"], "text": text})
    return shown


def page_data(
    prom: Prometheus, dashboard: dict[str, Any], now: float, scrape: float, theme: str
) -> dict[str, Any]:
    start, end = time_range(dashboard, now)
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    return {
        "dashboard": dashboard,
        "theme": theme,
        "width": WIDTH,
        "timeZone": "utc",
        "timeRange": {
            "from": start * 1000,
            "to": end * 1000,
            "raw": dashboard.get("time") or {"from": "now-6h", "to": "now"},
        },
        "timeRangeText": range_text(dashboard),
        "variables": variables(dashboard),
        "panels": {str(p["id"]): panel_frames(prom, p, start, end, scrape) for p in panels},
    }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """The page's files on loopback: the page fetches data.json, which file:// forbids."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium through chromium-driver, as tests/integration/test_topology_browser.py
    drives it: headless, nothing reachable but loopback."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise PicturesError("Debian's chromium and chromium-driver (scripts/testbed.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH},1000",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--proxy-server=http://127.0.0.1:9",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--font-render-hinting=none",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield session
    finally:
        session.quit()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="pictures.css">
<style>html {{ box-sizing: border-box; }} *, *::before, *::after {{ box-sizing: inherit; }}</style>
<script>window.__grafana_public_path__ = 'public/';</script>
</head><body><div id="root"></div><script src="pictures.js"></script></body></html>
"""


def draw(
    browser: Any, bundle: Path, data: dict[str, Any], path: Path, timeout: float = 120
) -> tuple[PanelDrawn, ...]:
    with tempfile.TemporaryDirectory(prefix="dhe-pictures-") as tmp:
        site = Path(tmp)
        shutil.copy(bundle, site / "pictures.js")
        shutil.copy(bundle.with_suffix(".css"), site / "pictures.css")
        icons = bundle.parent / "public"
        if icons.is_dir():
            shutil.copytree(icons, site / "public")
        (site / "data.json").write_text(json.dumps(data))
        (site / "index.html").write_text(PAGE.format(title=data["dashboard"]["title"]))
        with serve(site) as base:
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            )
            browser.get(base + "/index.html")
            deadline = time.monotonic() + timeout
            report = None
            while report is None or not report.get("ready"):
                if time.monotonic() > deadline:
                    raise PicturesError(f"the page did not finish drawing in {timeout:g} s")
                time.sleep(0.2)
                report = browser.execute_script("return window.__pictures || null")
            if report.get("failed"):
                raise PicturesError(f"the page failed: {report['failed']}")
            height = int(report["height"])
            browser.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            # The resize re-lays nothing (panels have fixed sizes); a frame for the paint.
            browser.execute_async_script(
                "const done = arguments[0];"
                "requestAnimationFrame(() => requestAnimationFrame(done));"
            )
            path.write_bytes(browser.get_screenshot_as_png())
    return tuple(
        PanelDrawn(
            id=int(p["id"]),
            title=str(p["title"]),
            type=str(p["type"]),
            count=int(p["count"]),
            no_data=bool(p["noData"]),
            error=p.get("error"),
            text=str(p.get("text", "")),
            instances=tuple(p.get("instances", ())),
        )
        for p in report["panels"]
    )


def picture_name(dashboard: dict[str, Any]) -> str:
    return f"dashboard-{dashboard['uid'].removeprefix('dhe-')}.png"


def render_all(
    base: str,
    out: Path,
    *,
    scrape_interval: float = 15.0,
    theme: str = "dark",
    only: tuple[str, ...] = (),
    now: float | None = None,
    dashboards: Path = HERE / "dashboards",
) -> list[Picture]:
    """Every dashboard in `dashboards` (or those whose uid is in `only`) as
    dashboard-<uid>.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    bundle = bundle_path()
    prom = Prometheus(base)
    pictures = []
    with chromium() as browser:
        for source in sorted(dashboards.glob("*.json")):
            dashboard = json.loads(source.read_text())
            if only and dashboard["uid"] not in only:
                continue
            data = page_data(prom, dashboard, now or time.time(), scrape_interval, theme)
            path = out / picture_name(dashboard)
            panels = draw(browser, bundle, data, path)
            pictures.append(Picture(path, dashboard["uid"], panels))
    return pictures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "img")
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="the data source's, in seconds"
    )
    parser.add_argument("--theme", choices=("dark", "light"), default="dark")
    args = parser.parse_args()
    for picture in render_all(
        args.prometheus, args.out, scrape_interval=args.scrape_interval, theme=args.theme
    ):
        empty = [p.title for p in picture.panels if p.no_data or p.error]
        print(picture.path, f"({len(picture.panels)} panels, without data: {empty or 'none'})")


if __name__ == "__main__":
    main()
