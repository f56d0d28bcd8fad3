"""The ``mopps.*`` config block read by the verl adapters.

Its keys are ``mopps.selectors.settings.ReferenceSettings`` (the MoPPS reference's ``tasksampler.*``,
with the same meaning and defaults as TRL's ``MoPPSConfig``) plus ``reward_key``, which names the
per-rollout value verl hands over to be judged (the reference hard-codes ``acc >= 1``).

In the V1 trainer the block is the top-level ``mopps`` node of the verl config; the legacy sampler
(verl <= 0.7.1 only passes the ``data`` node to samplers) reads it from ``data.sampler.mopps``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from mopps.selectors.settings import ReferenceSettings


@dataclass
class MoPPSVerlConfig(ReferenceSettings):
    """Settings of MoPPS inside verl: ``ReferenceSettings`` (see there) plus

    ``reward_key``: which per-rollout value is judged: a key of the reward function's extra info
    (``"acc"`` from ``mopps.tasks.compute_score``) or ``"score"`` for the summed token-level score.

    Here each step draws ``round(ts_ratio * B)`` candidate prompts from verl's dataloader;
    ``seed`` None = 0; ``bandit_init_path`` keys are prompt keys ``f"{data_source}/{extra_info.index}"``.
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
        values = dict(mapping or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"mopps.{unknown[0]} is not a MoPPS setting; known keys: {sorted(known)}")
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"mopps.{error}") from None

