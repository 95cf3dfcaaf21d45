"""The host's plumbing as a picture: /topology and `inspect --format svg`.

Snapshot -> Topology (frozen dataclasses: what to draw, joined by the collectors' own judges)
-> SVG. One band per bridge, left to right: containers -> their interfaces -> host veths ->
the bridge -> the Docker network -> its way off the host (MASQUERADE per subnet, DNAT per
published port); then the containers with no veth (host, none, other drivers), veths on no
bridge, and shims with no container. What is broken is red, with its reason in the box and
on hover.

Pure: nothing here reads the host. Every string from the Engine API or the kernel (names,
images, paths) is untrusted: it is cleaned of characters XML cannot hold and escaped where it
is written, never trusted as markup. The page is rendered once per snapshot (TopologyPage)
and served as bytes, with a Content-Security-Policy that allows only its own inline style and
script.

model.py builds what to draw from a snapshot, layout.py places it and makes its text safe,
svg.py draws it, page.py serves it.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.topology.layout import clean
from exporter.topology.model import Topology, build
from exporter.topology.page import CONTENT_SECURITY_POLICY, TopologyPage, render_page, topology_svg
from exporter.topology.svg import render_svg

__all__: Sequence[str] = (
    "CONTENT_SECURITY_POLICY",
    "Topology",
    "TopologyPage",
    "build",
    "clean",
    "render_page",
    "render_svg",
    "topology_svg",
)
