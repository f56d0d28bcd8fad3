"""``MoPPSConfig``: the prompt-selection settings of ``MoPPSGRPOTrainer``, in one dataclass.

Field names mirror the reference implementation's ``tasksampler.*`` keys (thu-rllab/MoPPS), so a
setting copied from the paper's scripts means the same thing here:

==========================  ==============================================================
reference key               here
==========================  ==============================================================
``ts_ratio``                ``ts_ratio``: candidates per generation / prompts per generation
``bandit_sample_strategy``  ``bandit_sample_strategy``: "topk", "threshold", "uniform", ...
``bandit_target_mean``      ``bandit_target_mean``: gamma*, the success rate aimed at
``bandit_decay_ratio``      ``bandit_decay_ratio``: lambda, 1.0 = plain counting
``bandit_lower_bound``      ``bandit_lower_bound`` / ``bandit_upper_bound``: the "threshold" band
``bandit_init`` + dir       ``bandit_init_path``: offline pass-count file (None = no prior)
``acc >= 1``                ``success_rule`` / ``success_threshold`` / ``success_reward``
==========================  ==============================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mopps.core.evidence import SuccessRule
from mopps.selectors import MoPPS


@dataclass
class MoPPSConfig:
    """Prompt-selection settings (defaults: the paper's Countdown setting except ``bandit_decay_ratio``).

    ``ts_ratio``: float >= 1; each generation draws ``round(ts_ratio * B)`` candidate rows (capped at
    the dataset size), B = ``generation_batch_size // num_generations`` prompts per generation, and the
    selector keeps B of them (paper: 8 for Countdown/Geo3k, 16 for MATH).
    ``bandit_sample_strategy``, ``bandit_target_mean``, ``bandit_decay_ratio``,
    ``bandit_lower_bound``, ``bandit_upper_bound``, ``prior_alpha``, ``prior_beta``: the arguments
    ``strategy``, ``target``, ``discount``, ``band`` and ``prior`` of ``mopps.MoPPS`` (paper:
    decay 0.5 for Countdown/Geo3k, 1.0 for MATH).
    ``bandit_init_path``: a JSON file ``{prompt_id: [0/1 result of each base-model sample, ...]}``
    (the reference's ``index_score.json``); its pass counts seed the posteriors with weight
    ``bandit_init_weight`` (reference: 3), see ``MoPPS.initialize_from_pass_counts``.
    ``success_rule`` ("threshold" | "sign" | "fraction") and ``success_threshold``: how one rollout's
    reward becomes a success (``mopps.SuccessRule``); ``success_reward``: the name of the reward
    function whose output is judged (e.g. an accuracy reward next to a format reward), or None for
    the weighted total reward that GRPO trains on.
    ``id_column``: dataset column with a stable, unique prompt id per row (int >= 0 or str), or None
    to key prompts by row position. Use a column when a prior file or a later run must match prompts.
    ``seed``: seed of the selector and of the candidate stream, or None for ``GRPOConfig.seed``.
    """

    ts_ratio: float = 8.0
    bandit_sample_strategy: str = "topk"
    bandit_target_mean: float = 0.5
    bandit_decay_ratio: float = 1.0
    bandit_lower_bound: float = 0.3
    bandit_upper_bound: float = 0.7
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    bandit_init_path: str | None = None
    bandit_init_weight: float = 3.0
    success_rule: str = "threshold"
    success_threshold: float = 1.0
    success_reward: str | None = None
    id_column: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.ts_ratio) and self.ts_ratio >= 1.0):
            raise ValueError(f"ts_ratio = {self.ts_ratio}; ts_ratio must be finite and >= 1")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed = {self.seed}; seed must be >= 0 or None")
        try:
            SuccessRule(self.success_rule, self.success_threshold)
        except ValueError as error:
            raise ValueError(f"success_rule / success_threshold: {error}") from None

    def success(self) -> SuccessRule:
        """The ``SuccessRule`` that binarises each rollout's reward."""
        return SuccessRule(self.success_rule, self.success_threshold)

    def num_candidates(self, prompts_per_generation: int, num_rows: int) -> int:
        """Candidates drawn per generation: ``round(ts_ratio * prompts_per_generation)``, at most
        ``num_rows``."""
        return min(int(round(self.ts_ratio * prompts_per_generation)), num_rows)

    def build_selector(self, seed: int) -> MoPPS:
        """A ``MoPPS`` selector with these settings and ``seed`` (the prior file is applied by the
        trainer, which knows the dataset's ids)."""
        return MoPPS(prior=(self.prior_alpha, self.prior_beta), discount=self.bandit_decay_ratio,
                     target=self.bandit_target_mean, strategy=self.bandit_sample_strategy,
                     band=(self.bandit_lower_bound, self.bandit_upper_bound), seed=seed)


def read_pass_counts(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a pass-count file ``{prompt_id: [result, ...]}`` (results 0/1 or fractions in [0, 1]).

    Returns ``(keys, successes, trials)``: the prompt ids as the file's string keys (m,);
    ``successes`` float (m,) = sum of results; ``trials`` float (m,) = number of results.
    Raises ``ValueError`` naming the bad key.
    """
    with open(Path(path), encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{prompt_id: [results]}}, got {type(data).__name__}")
    keys = list(data)
    successes = np.zeros(len(keys))
    trials = np.zeros(len(keys))
    for position, key in enumerate(keys):
        results = data[key]
        if not isinstance(results, list) or not results:
            raise ValueError(f"{path}: entry {key!r} must be a non-empty list of results")
        values = np.asarray(results, dtype=np.float64)
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise ValueError(f"{path}: entry {key!r} has a result outside [0, 1]")
        successes[position] = values.sum()
        trials[position] = len(values)
    return keys, successes, trials
