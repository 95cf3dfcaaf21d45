"""Renders each dashboard's panels from a real Prometheus into one PNG per dashboard, for the
README: there is no Grafana server to screenshot here, so the panels are drawn from the same
queries (variables substituted) with matplotlib, laid out on the dashboard's own grid.

    python grafana/render.py --prometheus http://127.0.0.1:9090 --out docs/img

`make pictures` runs it against the end-to-end test's Prometheus, on a host set up with
containers, orphaned veths, a missing MASQUERADE rule and a drifted daemon.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
ROW_INCHES = 0.42  # one grid row
WIDTH_INCHES = 22.0


def substitute(expr: str) -> str:
    return re.sub(r"\$(\w+)", ".*", expr.replace("$__rate_interval", "15s"))


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
        body = json.load(response)
    return body["data"]["result"]


def legend(template: str, labels: dict[str, str]) -> str:
    if not template:
        return ",".join(f"{k}={v}" for k, v in labels.items())
    # A label a series lacks (a veth with no container) renders as "-", as Grafana's would.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1)) or "-", template)


def draw_timeseries(ax: Any, base: str, panel: dict[str, Any], window: float) -> None:
    end = time.time()
    for target in panel["targets"]:
        series = api(
            base,
            "query_range",
            query=substitute(target["expr"]),
            start=f"{end - window:.0f}",
            end=f"{end:.0f}",
            step="2",
        )
        for s in series[:10]:
            xs = [float(t) - end for t, _ in s["values"]]
            ys = [float(v) for _, v in s["values"]]
            ax.plot(xs, ys, label=legend(target.get("legendFormat", ""), s["metric"])[:40])
    ax.set_xlabel("seconds ago", fontsize=7)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="upper left")


def draw_stat(ax: Any, base: str, panel: dict[str, Any]) -> None:
    result = api(base, "query", query=substitute(panel["targets"][0]["expr"]))
    values = [float(r["value"][1]) for r in result]
    text = ", ".join(f"{v:g}" for v in values[:3]) if values else "no data"
    red = any(v > 0 for v in values) and panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]
    ax.text(
        0.5,
        0.45,
        text,
        ha="center",
        va="center",
        fontsize=22,
        color="#d44a3a" if red else "#299c46",
    )
    ax.axis("off")


def draw_table(ax: Any, base: str, panel: dict[str, Any]) -> None:
    result = api(base, "query", query=substitute(panel["targets"][0]["expr"]))
    columns = next(
        t["options"]["include"]["names"]
        for t in panel["transformations"]
        if t["id"] == "filterFieldsByName"
    )
    columns = [c for c in columns if c != "instance"]
    rows = [
        [(r["value"][1] if c == "Value" else r["metric"].get(c, ""))[:28] for c in columns]
        for r in result[:12]
    ]
    ax.axis("off")
    if rows:
        table = ax.table(cellText=rows, colLabels=columns, loc="upper center", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(6)
    else:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center")


def render(base: str, dashboard: dict[str, Any], out: Path, window: float = 300) -> Path:
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    height = rows * ROW_INCHES + 1.2
    fig = plt.figure(figsize=(WIDTH_INCHES, height))
    fig.text(0.005, 1 - 0.25 / height, dashboard["title"], fontsize=14, va="top")
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        g = panel["gridPos"]
        top = 0.7 / height  # room for the dashboard's title
        scale = (1 - top) / rows
        ax = fig.add_axes(
            (
                g["x"] / 24 + 0.005,
                1 - top - (g["y"] + g["h"]) * scale,
                g["w"] / 24 - 0.012,
                g["h"] * scale - 0.3 / height,  # room for the panel's title
            )
        )
        ax.set_title(panel["title"], fontsize=9, loc="left")
        if panel["type"] == "timeseries":
            draw_timeseries(ax, base, panel, window)
        elif panel["type"] == "stat":
            draw_stat(ax, base, panel)
        else:
            draw_table(ax, base, panel)
    path = out / f"dashboard-{dashboard['uid'].removeprefix('dhe-')}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render_all(base: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        render(base, json.loads(p.read_text()), out)
        for p in sorted((HERE / "dashboards").glob("*.json"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "img")
    args = parser.parse_args()
    for path in render_all(args.prometheus.rstrip("/"), args.out):
        print(path)


if __name__ == "__main__":
    main()
