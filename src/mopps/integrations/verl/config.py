"""The ``mopps.*`` config block read by the verl adapters, and the selection loop it builds.

Its keys are ``mopps.selectors.settings.ReferenceSettings`` (the MoPPS reference's ``tasksampler.*``,
with the same meaning and defaults as TRL's ``MoPPSGRPOConfig``, plus ``selector_class`` /
``selector_kwargs`` and ``features_path`` / ``features_column``) and ``reward_key``, which names the
per-rollout value verl hands over to be judged (the reference hard-codes ``acc >= 1``).

In the V1 trainer the block is the top-level ``mopps`` node of the verl config; the legacy sampler
(verl <= 0.7.1 only passes the ``data`` node to samplers) reads it from ``data.sampler.mopps``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from mopps.core.evidence import as_verdict_mask
from mopps.integrations.verl.features import add_prompt_features
from mopps.integrations.verl.keys import dataset_keys
from mopps.loop import SelectionLoop
from mopps.loop.evidence_log import open_evidence_log
from mopps.selectors.base import Selector
from mopps.selectors.settings import ReferenceSettings

SCORE_KEY = "score"  # reward_key that judges the summed token-level score instead of a reward extra
VERDICT_KEY = "has_verdict"  # reward extra: 1.0 = the reward is evidence, 0.0 = none (e.g. a grader timeout)


@dataclass
class MoPPSVerlConfig(ReferenceSettings):
    """Settings of MoPPS inside verl: ``ReferenceSettings`` (see there) plus

    ``reward_key``: which per-rollout value is judged: a key of the reward function's extra info
    (``"acc"`` from ``mopps.tasks.compute_score``) or ``"score"`` for the summed token-level score.
    ``max_num_gen_batches`` (shared): n >= 1 makes the V1 trainer assemble each training batch with
    ``mopps.Refill``; ``dynamic_sampling_at_cap`` (shared) says what it trains at the cap.

    Here each step offers ``round(ts_ratio * B)`` candidate prompts to the selector; ``seed`` None = 0;
    prompt ids (``bandit_init_path`` keys, feature-file ids) are ``f"{data_source}/{extra_info.index}"``.
    """

    reward_key: str = "acc"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.reward_key:
            raise ValueError("reward_key is empty; name an extra-info key such as 'acc', or 'score'")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> "MoPPSVerlConfig":
        """Build from a dict or OmegaConf node (None -> defaults); unknown keys or bad values raise
        ``ValueError`` naming the ``mopps.<key>``."""
        if mapping is not None and not isinstance(mapping, dict):
            from omegaconf import OmegaConf  # a verl config node: plain values (selector_kwargs is a mapping)

            mapping = OmegaConf.to_container(mapping, resolve=True)
        values = dict(mapping or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"mopps.{unknown[0]} is not a MoPPS setting; known keys: {sorted(known)}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"mopps.{error}") from None

    def checked_selector(self, selector: Selector | None = None) -> Selector:
        """``build_selector`` (verl's default seed 0) with errors naming the ``mopps.<key>``."""
        try:
            return self.build_selector(default_seed=0, selector=selector)
        except ValueError as error:
            raise ValueError(f"mopps.{error}") from None

    def build_loop(self, dataset, selector: Selector, clock: str = "observe", group_size: int = 8) -> SelectionLoop:
        """The selection loop over verl's training ``dataset`` (an ``RLHFDataset``) with ``selector``
        (from ``checked_selector``): prompt ids are the rows' keys (refusing missing or repeated
        ``extra_info.index``), the selector is seeded from the pass-count prior file and given the
        configured features. ``clock``: the loop's (``SelectionLoop``); ``group_size`` (rollouts per
        prompt) goes into the evidence log. Errors name the ``mopps.<key>``."""
        keys = dataset_keys(dataset)
        try:
            loop = SelectionLoop(selector, keys, rule=self.build_success_rule(), ts_ratio=self.ts_ratio,
                                 seed=self.seed_or(0), learn=not self.bandit_no_update, clock=clock,
                                 evidence_log=open_evidence_log(self.evidence_log, "verl", group_size, self.seed_or(0)))
            self.apply_prior_file(loop.selector, keys, "data_source/extra_info.index of the training set")
        except ValueError as error:
            raise ValueError(f"mopps.{error}") from None
        add_prompt_features(loop, dataset, keys, path=self.features_path, column=self.features_column)
        return loop


def verdict_mask(values) -> np.ndarray:
    """bool (r,) from per-rollout ``has_verdict`` extras (1.0 / 0.0, or bools): True = evidence.

    The loop's own reading (``mopps.core.evidence.as_verdict_mask``): anything but 0/1 (NaN, 0.7)
    is a ``ValueError`` naming ``has_verdict`` and the position, not a guess either way."""
    return as_verdict_mask(values)
