"""Where things go: the picture's columns, box and row heights, and text made safe for XML and
HTML and fitted to its box. Every string from the Engine API or the kernel is untrusted: it is
cleaned of characters XML cannot hold and escaped where it is written."""

from __future__ import annotations

import html
import re

from exporter.topology.model import Box, Row

# Columns: container, its interface, host veth, bridge, network, way out.
COL_X = (8, 246, 424, 628, 816, 1052)
COL_W = (220, 160, 172, 170, 200, 310)
BUS_X = (612, 1034)  # the bridge's bus (veths -> bridge), the network's (-> exits)
WIDTH = COL_X[5] + COL_W[5] + 8
LINE = 14  # px per text line
PAD = 6
GAP = 8  # between rows
MID = PAD + 9  # where connectors meet a box: the middle of its first line
_CHAR_PX = 6.3  # an 11px sans-serif character, wide enough for most

# ---------------------------------------------------------------------------------------------
# Text that is safe in XML and HTML


# Characters XML 1.0 cannot hold even as references, and the bidirectional controls that could
# make a name read as another.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)


def clean(text: str) -> str:
    """Untrusted text as something a person can read: line breaks shown as ⏎, other control
    characters (and lone surrogates) as �."""
    return _UNSAFE.sub(
        "\ufffd", text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎").replace("\t", " ")
    )


def esc(text: str) -> str:
    """For text and attribute values alike (quotes escaped too)."""
    return html.escape(clean(text), quote=True)


def fit(text: str, width: float) -> str:
    chars = max(4, int((width - 2 * PAD) / _CHAR_PX))
    text = clean(text)
    return text if len(text) <= chars else text[: chars - 1] + "…"


def box_height(box: Box) -> int:
    extra = 1 if box.broken else 0
    return (len(box.lines) + extra) * LINE + 2 * PAD


def row_height(row: Row) -> int:
    return max((box_height(c) for c in row.cells if c is not None), default=LINE) + GAP
