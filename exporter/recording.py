"""Snapshots to JSON and back: `inspect --format json` records a host, tests replay it."""

from __future__ import annotations

import json

from exporter import factcodec
from exporter.snapshot import CollectorState, Snapshot


def snapshot_json(snapshot: Snapshot) -> str:
    return (
        json.dumps(
            {name: factcodec.encode(state) for name, state in snapshot.collectors.items()},
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )


def snapshot_from_json(text: str, facts_types: dict[str, type]) -> Snapshot:
    """facts_types: each collector's facts type, by collector name."""
    types = facts_types
    snapshot = Snapshot()
    for name, data in json.loads(text).items():
        facts = data.pop("facts")
        state = factcodec.decode(CollectorState, {**data, "facts": None})
        snapshot = snapshot.with_state(
            CollectorState(
                **{
                    **vars(state),
                    "facts": factcodec.decode(types[name], facts) if facts is not None else None,
                }
            )
        )
    return snapshot
