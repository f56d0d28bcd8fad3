"""Oracle: selection by the *true* success rates, the ceiling any predictor can reach.

Given a function that returns each prompt's exact success rate under the current policy (the
embedded testbed computes it by teacher forcing), the oracle keeps the k candidates whose true rate
is closest to ``target``. Its look-ups are free by construction; it learns nothing from ``update``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mopps.core.schedule import check_target, target_at
from mopps.core.selection import topk_toward_target
from mopps.core.validation import as_float_array
from mopps.selectors.base import NoLearnedState, Selector


class Oracle(Selector):
    """``success_rate``: callable mapping candidate ids (int64 array or list of str, (n,)) to their true
    success rates, float (n,) in [0, 1]. ``target``: the rate to aim at (0.5), or a schedule ``[[tick,
    rate], ...]`` over the policy tick (``mopps.core.schedule``)."""


    def __init__(self, success_rate: Callable[[Any], np.ndarray], target: float = 0.5,
                 seed: int | None = 0) -> None:
        if not callable(success_rate):
            raise ValueError(f"success_rate = {success_rate!r}; success_rate must be callable")
        self.success_rate = success_rate
        self.target = check_target(target)
        super().__init__(seed)

    def predict(self, ids) -> np.ndarray:
        """The true success rates of ``ids``."""
        return self._true_rates(ids)

    def _true_rates(self, ids) -> np.ndarray:
        rates = as_float_array(self.success_rate(ids), "success_rate(ids)")
        if len(rates) != len(ids):
            raise ValueError(f"success_rate returned {len(rates)} rates for {len(ids)} ids")
        outside = (rates < 0.0) | (rates > 1.0)
        if outside.any():
            position = int(np.argmax(outside))
            raise ValueError(f"success_rate(ids)[{position}] = {rates[position]}; rates must lie in [0, 1]")
        return rates

    def initial_state(self) -> NoLearnedState:
        return NoLearnedState()

    def _choose(self, state, kind, ids, k, rng):
        rates = self._true_rates(ids)
        return topk_toward_target(rates, k, target_at(self.target, self.tick)), rates, rates

    def _restore(self, arrays: dict[str, Any]) -> NoLearnedState:
        return NoLearnedState.restore(arrays)

    def _config(self) -> dict[str, Any]:
        return {"target": self.target}
