"""Snapshots to JSON and back: `inspect --format json` records a host, tests replay it."""

from __future__ import annotations

import json

from exporter import factcodec
from exporter.collectors import counters_types as registered_counters
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


def snapshot_from_json(
    text: str, facts_types: dict[str, type], counters_types: dict[str, type] | None = None
) -> Snapshot:
    """facts_types: each collector's facts type, by collector name; counters_types: the
    counters' type of those that keep counters apart (by default every collector's)."""
    types = facts_types
    if counters_types is None:
        counters_types = registered_counters()
    snapshot = Snapshot()
    for name, data in json.loads(text).items():
        facts = data.pop("facts")
        counters = data.pop("counters", None)
        state = factcodec.decode(CollectorState, {**data, "facts": None})
        counted = counters_types.get(name)
        snapshot = snapshot.with_state(
            CollectorState(
                **{
                    **vars(state),
                    "facts": factcodec.decode(types[name], facts) if facts is not None else None,
                    "counters": factcodec.decode(counted, counters)
                    if counters is not None and counted is not None
                    else None,
                }
            )
        )
    return snapshot
