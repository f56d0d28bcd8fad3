"""Measuring instruments for the gain curve: oracles that see the exact success rate through noise of a
known size and kind. They are not selectors a user would run (they need the exact rates only the
testbed has); they answer "how good, and how fresh, must a prediction be to pay?".

- ``NoisyOracle(kind, sd)``: the exact logit plus Gaussian noise of standard deviation ``sd``
  (logit units), keeping the k candidates whose noisy rate is nearest ``target``. ``kind`` says
  when a prompt's noise is drawn:
  ``"fresh"``: anew at every selection (errors never stick);
  ``"persistent"``: once per prompt for the whole run (errors stick forever);
  ``"visit"``: anew each time the prompt is rolled out (``update``), and kept in between — the
  information structure of per-prompt evidence, yet always centred on the *current* exact rate.
- ``PilotOracle(rollouts)``: the rate as ``rollouts`` fresh rollouts of each candidate would estimate
  it (Binomial(m, p) / m, drawn anew each selection); a bench run counts those rollouts.
- ``InformativeOracle``: draws the k candidates without replacement with probability proportional
  to the exact chance that a group of n is mixed, 1 - p^n - (1 - p)^n
  (``mopps.core.selection.informative_draw``): a broader objective than the k nearest to 0.5.

Noise and pilot draws come from the selector's own generator (saved with its state), so a run is
reproducible and resumable like any selector's. Prompt ids are pool positions 0 .. num_prompts - 1.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from mopps.core.selection import informative_draw, topk_toward_target
from mopps.core.validation import check_choice, check_integer, check_number
from mopps.selectors.base import NoLearnedState
from mopps.selectors.oracle import Oracle

NOISE_KINDS = ("fresh", "persistent", "visit")
_CLIP = 1e-6  # exact rates reach 0.0 and 1.0; their logit is taken at [1e-6, 1 - 1e-6]


def _logit(rates: np.ndarray) -> np.ndarray:
    clipped = np.clip(rates, _CLIP, 1.0 - _CLIP)
    return np.log(clipped) - np.log1p(-clipped)


class PromptNoise(NamedTuple):
    """``noise``: float64 (num_prompts,), the logit offset each prompt's exact rate is seen through."""

    noise: np.ndarray


class NoisyOracle(Oracle):
    """The exact rate seen through Gaussian logit noise of size ``sd`` and kind ``kind`` (module
    docstring). ``num_prompts``: ids are 0 .. num_prompts - 1 (the pool)."""

    def __init__(self, success_rate: Callable[[Any], np.ndarray], kind: str, sd: float, num_prompts: int,
                 target: float = 0.5, seed: int | None = 0) -> None:
        self.kind = check_choice(kind, "kind", NOISE_KINDS)
        self.sd = check_number(sd, "sd", minimum=0.0)
        self.num_prompts = check_integer(num_prompts, "num_prompts", minimum=1)
        super().__init__(success_rate, target=target, seed=seed)

    def initial_state(self) -> PromptNoise | NoLearnedState:
        if self.kind == "fresh":
            return NoLearnedState()
        return PromptNoise(self.sd * self.rng.standard_normal(self.num_prompts))

    def _noise(self, state, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "fresh":
            return self.sd * rng.standard_normal(len(ids))
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.num_prompts):
            raise ValueError(f"ids must lie in [0, {self.num_prompts}) for a {self.kind} noisy oracle")
        return state.noise[ids]

    def _choose(self, state, kind, ids, k, rng):
        seen = 1.0 / (1.0 + np.exp(-(_logit(self._true_rates(ids)) + self._noise(state, ids, rng))))
        return topk_toward_target(seen, k, self.target), seen, seen

    def _observe(self, state, kind, ids, successes, trials):
        if self.kind != "visit":
            return state
        ids = np.asarray(ids, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= self.num_prompts:
            raise ValueError(f"ids must lie in [0, {self.num_prompts}) for a visit noisy oracle")
        noise = state.noise.copy()
        noise[ids] = self.sd * self.rng.standard_normal(len(ids))
        return PromptNoise(noise)

    def _restore(self, arrays: dict[str, Any]):
        if self.kind == "fresh":
            return NoLearnedState.restore(arrays)
        noise = np.array(arrays["noise"], dtype=np.float64)
        if noise.shape != (self.num_prompts,) or not np.isfinite(noise).all():
            raise ValueError(f"noise must be {self.num_prompts} finite numbers")
        return PromptNoise(noise)

    def _config(self) -> dict[str, Any]:
        return {"kind": self.kind, "sd": self.sd, "num_prompts": self.num_prompts, "target": self.target}


class PilotOracle(Oracle):
    """Each candidate's rate as ``rollouts`` fresh rollouts would estimate it, nearest ``target``
    first (ties: stream order). Costs ``rollouts`` rollouts per candidate per selection."""

    def __init__(self, success_rate: Callable[[Any], np.ndarray], rollouts: int, target: float = 0.5,
                 seed: int | None = 0) -> None:
        self.rollouts = check_integer(rollouts, "rollouts", minimum=1)
        super().__init__(success_rate, target=target, seed=seed)

    def _choose(self, state, kind, ids, k, rng):
        estimate = rng.binomial(self.rollouts, self._true_rates(ids)) / self.rollouts
        return topk_toward_target(estimate, k, self.target), estimate, estimate

    def _config(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts, "target": self.target}


class InformativeOracle(Oracle):
    """Draws k candidates without replacement, each with probability proportional to the exact chance
    that its group of ``group_size`` rollouts is mixed. Its prediction is the exact rate."""

    def __init__(self, success_rate: Callable[[Any], np.ndarray], group_size: int, seed: int | None = 0) -> None:
        self.group_size = check_integer(group_size, "group_size", minimum=2)
        super().__init__(success_rate, seed=seed)

    def _choose(self, state, kind, ids, k, rng):
        rates = self._true_rates(ids)
        index, keys = informative_draw(rates, k, self.group_size, rng)
        return index, keys, rates

    def _config(self) -> dict[str, Any]:
        return {"group_size": self.group_size}
