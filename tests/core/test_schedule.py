"""Target schedules: validation and interpolation over the policy tick."""

from __future__ import annotations

import json

import pytest

from mopps.core.schedule import check_target, target_at


def test_a_schedule_is_linear_between_points_and_flat_outside():
    schedule = check_target([[10, 0.7], [20, 0.5], (40, 0.3)])
    assert schedule == [[10.0, 0.7], [20.0, 0.5], [40.0, 0.3]]
    assert json.loads(json.dumps(schedule)) == schedule  # plain JSON: it travels in a saved config
    assert target_at(schedule, 0) == pytest.approx(0.7)
    assert target_at(schedule, 15) == pytest.approx(0.6)
    assert target_at(schedule, 30) == pytest.approx(0.4)
    assert target_at(schedule, 10_000) == pytest.approx(0.3)
    assert target_at(check_target(0.25), 99) == 0.25


@pytest.mark.parametrize("target, named", [
    (1.5, "target = 1.5"),
    (True, "target = True"),
    ("0.5", "target = '0.5'"),
    ([], "non-empty schedule"),
    ([[0, 0.5], [0, 0.6]], "target\\[1\\].*strictly increasing"),
    ([[5, 0.5], [2, 0.6]], "target\\[1\\].*strictly increasing"),
    ([[0, 0.5], [10, 1.2]], "target\\[1\\].*rates must lie in \\[0, 1\\]"),
    ([[-1, 0.5]], "target\\[0\\].*ticks must be >= 0"),
    ([[0, 0.5, 3]], "target\\[0\\].*pair"),
    ([[float("nan"), 0.5]], "target\\[0\\].*finite"),
    (lambda tick: 0.5, "target = "),
])
def test_bad_targets_are_refused_naming_the_point(target, named):
    with pytest.raises(ValueError, match=named):
        check_target(target)
