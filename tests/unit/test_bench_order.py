"""bench.change_cost's order of measurements: every scene for every tree in each round, each
round in the reverse order of the one before (ABBA), so that a drifting machine weighs alike on
the two sides of a ratio."""

from __future__ import annotations

from bench.change_cost import round_order


def test_every_other_round_measures_in_the_reverse_order() -> None:
    scenes, trees = ["idle", "churn"], ["main", "branch"]
    first, second, third = (round_order(scenes, trees, run) for run in range(3))
    assert first == [("idle", "main"), ("idle", "branch"), ("churn", "main"), ("churn", "branch")]
    assert second == first[::-1]
    assert third == first


def test_under_a_steady_drift_both_scenes_are_measured_at_the_same_mean_moment() -> None:
    """Two rounds of idle then churn: measured at moments 0 1 | 2 3 in a fixed order, idle would
    average 1 and churn 2; reversed every other round, each averages 1.5."""
    moments: dict[str, list[int]] = {"idle": [], "churn": []}
    at = 0
    for run in range(4):
        for scene, _ in round_order(["idle", "churn"], ["this"], run):
            moments[scene].append(at)
            at += 1
    assert sum(moments["idle"]) == sum(moments["churn"])
