"""The layers collector's own flags."""

from __future__ import annotations

from exporter.options import Option, non_negative

TOP_K = Option(
    "top-k",
    int,
    50,
    check=non_negative,  # a negative K sliced the list from its end: one layer silently dropped
    help="per-layer series only for the K layers that save the most bytes (default: 50)",
)
