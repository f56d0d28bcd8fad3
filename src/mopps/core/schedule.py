"""A target success rate that may move with the policy: a constant, or a piecewise-linear schedule.

A schedule is a list of points ``[[tick, rate], ...]`` over the policy tick (``Selector.tick``: one
per optimiser step): ticks finite, >= 0 and strictly increasing, rates in [0, 1]. Between points the
target is interpolated linearly; before the first point it is the first rate, after the last the last
rate. It is plain JSON (so it is saved with a selector's config and continues after a resume); no
Python callable is ever part of a state.

    [[0, 0.7], [500, 0.5], [2000, 0.3]]   # aim at easy prompts first, then harder ones
"""

from __future__ import annotations

import numpy as np

from mopps.core.validation import check_probability, is_number


def check_target(target, name: str = "target") -> float | list[list[float]]:
    """``target`` validated: a float in [0, 1], or a schedule as a list of ``[tick, rate]`` lists of
    floats. ``ValueError`` naming ``name`` and the bad point otherwise."""
    if is_number(target):
        try:
            return check_probability(target, name)
        except ValueError as error:
            raise ValueError(f"{error} (or be a schedule [[tick, rate], ...])") from None
    if isinstance(target, (str, bytes, dict)) or not hasattr(target, "__len__") or len(target) == 0:
        raise ValueError(f"{name} = {target!r}; {name} must be a rate in [0, 1] or a non-empty schedule "
                         "[[tick, rate], ...]")
    points = []
    for position, point in enumerate(target):
        where = f"{name}[{position}]"
        if isinstance(point, (str, bytes, dict)) or not hasattr(point, "__len__") or len(point) != 2:
            raise ValueError(f"{where} = {point!r}; each point must be a pair [tick, rate]")
        tick, rate = point
        for part, value in (("tick", tick), ("rate", rate)):
            if not (is_number(value) and np.isfinite(value)):
                raise ValueError(f"{where} = {point!r}; its {part} must be a finite number")
        if tick < 0:
            raise ValueError(f"{where} = {point!r}; ticks must be >= 0")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{where} = {point!r}; rates must lie in [0, 1]")
        if points and tick <= points[-1][0]:
            raise ValueError(f"{where} = {point!r}; ticks must be strictly increasing (previous {points[-1][0]})")
        points.append([float(tick), float(rate)])
    return points


def target_at(target: float | list[list[float]], tick: float) -> float:
    """The target rate at policy ``tick`` of a validated ``target`` (``check_target``)."""
    if isinstance(target, float):
        return target
    ticks, rates = zip(*target)
    return float(np.interp(float(tick), ticks, rates))
