"""The ``mopps.*`` config block read by the verl adapters.

Keys mirror the MoPPS reference's ``tasksampler.*`` (thu-rllab/MoPPS, a verl-0.4 fork), so a value
copied from the paper's scripts means the same thing here:

==============================  ==================================================================
reference ``tasksampler.*``     ``mopps.*``
==============================  ==================================================================
``framework`` (4 / 0)           ``bandit_sample_strategy`` ("topk"/"threshold"/... or "uniform")
``ts_ratio``                    ``ts_ratio``: candidates per step / prompts per step (integer)
``bandit_target_mean``          ``bandit_target_mean``: gamma*, the success rate aimed at
``bandit_decay_ratio``          ``bandit_decay_ratio``: lambda; 1.0 = plain counting
``bandit_lower_bound``/``upper``  the "threshold" band
``bandit_no_update``            ``bandit_no_update``: keep the prior, never learn
``bandit_load_dir``             ``bandit_load_path``: a selector state file to start from
``acc >= 1``                    ``reward_key`` + ``success_rule`` + ``success_threshold``
==============================  ==================================================================

In the V1 trainer the block is the top-level ``mopps`` node of the verl config; the legacy sampler
(verl <= 0.7.1 only passes the ``data`` node to samplers) reads it from ``data.sampler.mopps``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from mopps.core.evidence import SuccessRule
from mopps.selectors import STRATEGIES, MoPPS
from mopps.selectors.persistence import load_state


@dataclass(frozen=True)
class MoPPSVerlConfig:
    """Settings of MoPPS inside verl (defaults: the paper's Countdown setting).

    ``ts_ratio``: int >= 1; each step draws ``ts_ratio * B`` candidate prompts from verl's dataloader
    and the selector keeps B (paper: 8 for Countdown/Geo3k, 16 for MATH). 1 turns selection off.
    ``bandit_sample_strategy``, ``bandit_target_mean``, ``bandit_decay_ratio``,
    ``bandit_lower_bound``, ``bandit_upper_bound``, ``prior_alpha``, ``prior_beta``: ``strategy``,
    ``target``, ``discount``, ``band`` and ``prior`` of ``mopps.MoPPS``.
    ``bandit_no_update``: never update the posteriors (the reference's ablation switch).
    ``bandit_load_path``: a file written by ``MoPPS.save`` to start from ("" = fresh posteriors);
    ignored when verl resumes from a checkpoint, whose own selector state wins.
    ``reward_key``: which per-rollout value is judged: a key of the reward function's extra info
    (``"acc"`` from ``mopps.tasks.compute_score``) or ``"score"`` for the summed token-level score.
    ``success_rule`` / ``success_threshold``: how that value becomes a success (``mopps.SuccessRule``;
    the reference counts ``acc >= 1``).
    ``seed``: seed of the selector's generator (and of the legacy sampler's candidate stream).
    """

    ts_ratio: int = 8
    bandit_sample_strategy: str = "topk"
    bandit_target_mean: float = 0.5
    bandit_decay_ratio: float = 0.5
    bandit_lower_bound: float = 0.3
    bandit_upper_bound: float = 0.7
    bandit_no_update: bool = False
    bandit_load_path: str = ""
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    reward_key: str = "acc"
    success_rule: str = "threshold"
    success_threshold: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.ts_ratio, bool) or int(self.ts_ratio) != self.ts_ratio or self.ts_ratio < 1:
            raise ValueError(f"mopps.ts_ratio = {self.ts_ratio!r}; ts_ratio must be an integer >= 1")
        if self.bandit_sample_strategy not in STRATEGIES:
            raise ValueError(
                f"mopps.bandit_sample_strategy = {self.bandit_sample_strategy!r}; must be one of {STRATEGIES}"
            )
        if not self.reward_key:
            raise ValueError("mopps.reward_key is empty; name an extra-info key such as 'acc', or 'score'")
        self.build_selector()
        self.rule()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "MoPPSVerlConfig":
        """Build from a dict or OmegaConf node (None -> defaults); unknown keys raise ``ValueError``."""
        values = dict(mapping or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"mopps.{unknown[0]} is not a MoPPS setting; known keys: {sorted(known)}")
        return cls(**values)

    def build_selector(self) -> MoPPS:
        """A fresh ``MoPPS`` selector with these settings."""
        return MoPPS(
            prior=(self.prior_alpha, self.prior_beta),
            discount=self.bandit_decay_ratio,
            target=self.bandit_target_mean,
            strategy=self.bandit_sample_strategy,
            band=(self.bandit_lower_bound, self.bandit_upper_bound),
            seed=self.seed,
        )

    def load_selector(self) -> MoPPS:
        """The starting selector: from ``bandit_load_path`` if set, else fresh."""
        if not self.bandit_load_path:
            return self.build_selector()
        selector = self.build_selector()
        selector.load_state_dict(load_state(self.bandit_load_path))
        return selector

    def rule(self) -> SuccessRule:
        """The ``SuccessRule`` that turns one rollout's ``reward_key`` value into a success."""
        return SuccessRule(self.success_rule, self.success_threshold)
