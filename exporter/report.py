"""`inspect`: one sample as tables for a person at a shell. Each collector writes its own
sections (its report.py); this module holds what they share and puts them together."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from exporter.snapshot import Snapshot


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if len(cells) == 1:
        lines.append("(none)")
    return f"{title}\n" + "\n".join(lines) + "\n"


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def bytes_text(n: int) -> str:
    """Decimal units, as `docker system df` prints them."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"


def short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_report(snapshot: Snapshot, sections: Iterable[Callable[[Snapshot], list[str]]]) -> str:
    """The collectors table, then each collector's sections, in the collectors' order."""
    parts = [
        table(
            "COLLECTORS",
            ("COLLECTOR", "OK", "DURATION", "ERROR"),
            (
                (
                    s.name,
                    "yes" if s.success else "NO",
                    f"{s.duration_seconds * 1000:.1f}ms",
                    s.error or "",
                )
                for s in snapshot.collectors.values()
            ),
        )
    ]
    for section in sections:
        parts.extend(section(snapshot))
    return "\n".join(parts)
