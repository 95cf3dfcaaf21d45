"""Model -> SVG: one SVG per band, the stylesheet the page shares, and the standalone document
`inspect --format svg` prints."""

from __future__ import annotations

import html
import itertools

from exporter.topology.layout import (
    BUS_X,
    COL_W,
    COL_X,
    GAP,
    LINE,
    MID,
    PAD,
    WIDTH,
    box_height,
    clean,
    esc,
    fit,
    row_height,
)
from exporter.topology.model import Band, Box, Row, Topology, collector_warnings, when


def _box_svg(box: Box, column: int, y: int) -> str:
    x, w = COL_X[column], COL_W[column]
    h = box_height(box)
    classes = ["box", box.kind]
    if box.broken:
        classes.append("broken")
    elif box.warn:
        classes.append("warn")
    if box.dashed:
        classes.append("dashed")
    tip = "\n".join(clean(line) for line in box.lines)
    if box.broken:
        tip += "\nBROKEN: " + clean(box.broken)
    elif box.warn:
        tip += "\nNOTE: " + clean(box.warn)
    parts = [
        f'<g class="{" ".join(classes)}"><title>{html.escape(tip, quote=True)}</title>',
        f'<rect x="{x}" y="{y}" width="{w}" height="{h - 1}" rx="4"/>',
    ]
    for i, line in enumerate(box.lines):
        cls = "t" if i == 0 else "d"
        parts.append(
            f'<text class="{cls}" x="{x + PAD}" y="{y + PAD + 10 + i * LINE}">'
            f"{html.escape(fit(line, w), quote=True)}</text>"
        )
    if box.broken:
        parts.append(
            f'<text class="why" x="{x + PAD}" y="{y + PAD + 10 + len(box.lines) * LINE}">'
            f"{html.escape(fit('✗ ' + box.broken, w), quote=True)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _link(x1: int, x2: int, y: int, cls: str = "edge") -> str:
    return f'<line class="{cls}" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>'


def _row_svg(row: Row, y: int, first_column: int) -> str:
    joins = ' data-b="1"' if row.to_bus or first_column == 5 else ""
    parts = [
        f'<g class="row" data-h="{row_height(row)}" data-s="{esc(row.search)}"{joins} '
        f'transform="translate(0,{y})">'
    ]
    cells = [(first_column + i, c) for i, c in enumerate(row.cells) if c is not None]
    for (col, _), (next_col, nxt) in itertools.pairwise(cells):
        parts.append(
            _link(
                COL_X[col] + COL_W[col],
                COL_X[next_col],
                MID,
                "edge dashed" if nxt.dashed else "edge",
            )
        )
    for col, cell in cells:
        parts.append(_box_svg(cell, col, 0))
    if row.to_bus and cells:
        col, cell = cells[-1]
        parts.append(
            _link(COL_X[col] + COL_W[col], BUS_X[0], MID, "edge broken" if cell.broken else "edge")
        )
    if first_column == 5:
        parts.append(_link(BUS_X[1], COL_X[5], MID))
    parts.append("</g>")
    return "".join(parts)


def band_svg(band: Band) -> tuple[str, int]:
    """One band as an <svg> element, and its height. Rows are stacked by translate(0, y) and
    carry their height (data-h), so the page's search can hide rows and stack the rest again."""
    body: list[str] = []
    y = 0
    last_mid = None
    for row in band.rows:
        body.append(_row_svg(row, y, 0))
        if row.to_bus:
            last_mid = y + MID
        y += row_height(row)
    rows_h = y
    hub_h = 0
    if band.hub:
        bridge, network = (*band.hub, None, None)[:2]
        if bridge is not None:
            hub_h = max(hub_h, box_height(bridge))
        if network is not None:
            hub_h = max(hub_h, box_height(network))
    y = 0
    exits = []
    for row in band.exits:
        exits.append(_row_svg(row, y, 5))
        y += row_height(row)
    exits_h = y
    height = max(rows_h, hub_h + GAP, exits_h, LINE + GAP)
    hub: list[str] = []
    if band.hub:
        bridge, network = (*band.hub, None, None)[:2]
        if last_mid is not None:
            hub.append(
                f'<line class="bus" data-bus="rows" x1="{BUS_X[0]}" y1="{MID}" '
                f'x2="{BUS_X[0]}" y2="{last_mid}"/>'
            )
            hub.append(_link(BUS_X[0], COL_X[3], MID).replace("<line ", '<line data-stub="rows" '))
        if bridge is not None:
            hub.append(_box_svg(bridge, 3, 0))
        if network is not None:
            hub.append(_link(COL_X[3] + COL_W[3], COL_X[4], MID))
            hub.append(_box_svg(network, 4, 0))
        if band.exits:
            exits_last = exits_h - row_height(band.exits[-1]) + MID
            hub.append(
                f'<line class="bus" data-bus="exits" x1="{BUS_X[1]}" y1="{MID}" '
                f'x2="{BUS_X[1]}" y2="{exits_last}"/>'
            )
            stub = _link(COL_X[4] + COL_W[4], BUS_X[1], MID)
            hub.append(stub.replace("<line ", '<line data-stub="exits" '))
    svg = (
        f'<svg class="band" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" data-hub="{hub_h + GAP}">'
        + "".join(hub)
        + f'<g class="rows">{"".join(body)}</g>'
        + f'<g class="exits">{"".join(exits)}</g>'
        + "</svg>"
    )
    return svg, height


COLUMN_TITLES = ("containers", "interfaces", "host veths", "bridges", "Docker networks", "way out")

# One stylesheet for the page and the standalone SVG: classes only, no style attributes (the
# page's Content-Security-Policy allows this one stylesheet by its hash, and nothing else).
STYLE = """
svg text{font:11px sans-serif;fill:#1d2733}
svg text.t{font-weight:bold}
svg text.why{fill:#b00020;font-weight:bold}
svg .box rect{fill:#f4f7fb;stroke:#7d8fa3;stroke-width:1}
svg .container rect{fill:#e8f0fe}
svg .iface rect{fill:#eef7ee}
svg .veth rect{fill:#fdf6e3}
svg .bridge rect{fill:#efe8fb}
svg .network rect{fill:#e6f4f6}
svg .exit rect{fill:#f1f1f1}
svg .note rect{fill:#fafafa}
svg .dashed rect{stroke-dasharray:4 3}
svg .warn rect{stroke:#b26a00;stroke-width:2;fill:#fff4e0}
svg .broken rect{stroke:#b00020;stroke-width:2;fill:#fde8ea}
svg line.edge{stroke:#7d8fa3;stroke-width:1.2}
svg line.edge.dashed{stroke-dasharray:4 3}
svg line.edge.broken{stroke:#b00020;stroke-dasharray:5 3}
svg line.bus{stroke:#5a6b7d;stroke-width:2}
svg text.band-title{font-size:14px;font-weight:bold}
svg text.column{fill:#5a6b7d;font-size:11px;font-style:italic}
"""


def render_svg(topology: Topology) -> str:
    """The same picture as one standalone SVG document (`inspect --format svg`)."""
    parts: list[str] = []
    y = 8
    header = [f"Topology of {topology.host} at {when(topology.taken_at)}"]
    header += collector_warnings(topology)
    for line in header:
        cls = "band-title" if line is header[0] else "why"
        parts.append(f'<text class="{cls}" x="8" y="{y + 14}">{esc(line)}</text>')
        y += 20
    for col, title in enumerate(COLUMN_TITLES):
        parts.append(f'<text class="column" x="{COL_X[col]}" y="{y + 12}">{title}</text>')
    y += 20
    for band in topology.bands:
        bad = f" ({band.broken} broken)" if band.broken else ""
        parts.append(
            f'<text class="band-title" x="8" y="{y + 16}">'
            f"{esc(band.title)}: {esc(band.subtitle)}{esc(bad)}</text>"
        )
        y += 24
        svg, height = band_svg(band)
        parts.append(svg.replace("<svg ", f'<svg x="0" y="{y}" ', 1))
        y += height + 12
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" '
        f'viewBox="0 0 {WIDTH} {y}"><style>{STYLE}</style>'
        f'<rect width="{WIDTH}" height="{y}" fill="#ffffff"/>' + "".join(parts) + "</svg>\n"
    )
