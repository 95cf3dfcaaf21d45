"""Layer arithmetic on constructed history (no engine)."""

from __future__ import annotations

import hashlib

from exporter.collectors.layers.facts import LayersFacts
from exporter.collectors.layers.judge import layer_views, sharing_totals
from exporter.readers.layers import ImageFacts, LayerFacts, chain_ids, layer_sizes


def test_chain_ids_follow_the_oci_definition() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    expected = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids([a, b]) == [a, expected]
    assert chain_ids([]) == []


def test_legacy_builder_history_drops_nop_metadata() -> None:
    history = [  # newest first, as the API gives it
        {"Size": 0, "CreatedBy": '/bin/sh -c #(nop)  CMD ["sleep" "3600"]'},
        {"Size": 262144, "CreatedBy": "/bin/sh -c dd if=/dev/zero of=/data/blob"},
        {"Size": 0, "CreatedBy": "/bin/sh -c #(nop)  ENV X=1"},
        {"Size": 4, "CreatedBy": "/bin/sh -c mkdir -p /data"},
        {"Size": 1984162, "CreatedBy": ""},
    ]
    assert layer_sizes(history, 3) == [1984162, 4, 262144]


def test_buildkit_history_and_an_empty_real_layer() -> None:
    history = [
        {"Size": 0, "CreatedBy": 'CMD ["sh"]'},
        {"Size": 0, "CreatedBy": "RUN /bin/sh -c true # buildkit"},  # a real, empty layer
        {"Size": 0, "CreatedBy": "ENV A=b"},
        {"Size": 100, "CreatedBy": "COPY file / # buildkit"},
        {"Size": 50, "CreatedBy": ""},
    ]
    assert layer_sizes(history, 3) == [50, 100, 0]


def test_history_that_cannot_be_matched_is_not_guessed() -> None:
    history = [{"Size": 10, "CreatedBy": "squashed"}]
    assert layer_sizes(history, 3) == [0, 0, 10]


def test_views_and_totals() -> None:
    base, top_a, top_b = (LayerFacts(f"c{i}", f"d{i}", s) for i, s in enumerate((100, 10, 5)))
    facts = LayersFacts(
        images=(
            ImageFacts("a", ("a:1",), ("c0", "c1"), 110, 100, 2),
            ImageFacts("b", (), ("c0", "c2"), 105, 100, 0),
        ),
        layers=(base, top_a, top_b),
        containers=(),
        layers_size=115,
    )
    views = layer_views(facts)
    assert [(v.layer.chain_id, v.saved_bytes, v.containers) for v in views] == [
        ("c0", 100, 2),
        ("c1", 0, 2),
        ("c2", 0, 0),
    ]
    totals = sharing_totals(facts)
    assert (totals.without_sharing, totals.on_disk, totals.saved) == (215, 115, 100)
    assert facts.images[1].dangling and not facts.images[0].dangling
