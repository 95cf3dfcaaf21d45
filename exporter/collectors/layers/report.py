"""The layers collector's `inspect` sections: which images share which layers, and the biggest
read/write layers."""

from __future__ import annotations

from exporter.collectors.layers.facts import NAME, LayersFacts
from exporter.collectors.layers.judge import layer_views, sharing_totals
from exporter.report import bytes_text, table
from exporter.snapshot import Snapshot


def sections(snapshot: Snapshot) -> list[str]:
    facts = snapshot.current(NAME, LayersFacts)
    return layer_sections(facts) if facts is not None else []


def layer_sections(facts: LayersFacts, top: int = 20) -> list[str]:
    """The layer -> images matrix (which images share which layers) and the biggest read/write
    layers, as `docker system df -v` would not show them."""
    images = sorted(facts.images, key=lambda i: (i.tags or ("~",))[0])
    names = [(i.tags[0] if i.tags and i.tags[0] != "<none>:<none>" else i.id[7:19]) for i in images]
    columns = [f"[{n}] " for n in range(1, len(images) + 1)]
    legend = "".join(
        f"  [{n}] {name}: {bytes_text(i.size)}, shared {bytes_text(max(i.shared_size, 0))}, "
        f"unique {bytes_text(i.unique_size)}, {i.containers} containers\n"
        for n, (name, i) in enumerate(zip(names, images, strict=True), start=1)
    )
    totals = sharing_totals(facts)
    rows = [
        (
            v.layer.chain_id[7:19],
            bytes_text(v.layer.size),
            *("x" if image.id in v.images else "." for image in images),
            bytes_text(v.saved_bytes),
        )
        for v in layer_views(facts)
    ]
    matrix = (
        table(
            f"IMAGE LAYERS ({len(facts.layers)} layers; {bytes_text(totals.on_disk)} on disk, "
            f"{bytes_text(totals.without_sharing)} without sharing, "
            f"{bytes_text(totals.saved)} saved)",
            ("LAYER", "SIZE", *columns, "SAVED"),
            rows,
        )
        + legend
    )
    writers = sorted(facts.containers, key=lambda c: -c.size_rw)[:top]
    rw = table(
        "LARGEST READ/WRITE LAYERS",
        ("CONTAINER", "RW LAYER", "VIRTUAL SIZE", "IMAGE"),
        (
            (c.name, bytes_text(c.size_rw), bytes_text(c.size_root_fs), c.image_id[7:19])
            for c in writers
        ),
    )
    return [matrix, rw]
