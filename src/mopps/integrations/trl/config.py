"""The fields ``MoPPSGRPOConfig`` adds to TRL's ``GRPOConfig``, defined without importing trl.

``TrlSelectionSettings`` is ``mopps.selectors.settings.ReferenceSettings`` (the reference's
``tasksampler.*`` keys: the same names, defaults and ``help`` as verl's ``mopps.*`` block) plus what
only TRL needs: which reward function is judged and which column names a prompt.
``MoPPSGRPOConfig`` (module ``grpo_config``, which imports trl) is ``GRPOConfig`` + these fields;
its ``seed`` is TRL's own.

This module imports no trl, torch or transformers, so a script, a test or a config tool can read the
field definitions (``dataclasses.fields(TrlSelectionSettings)``) on a machine without them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from mopps.core.validation import check_integer
from mopps.selectors.settings import ReferenceSettings, help_field

__all__ = ["MoPPSConfig", "TrlSelectionSettings"]


@dataclass
class TrlSelectionSettings(ReferenceSettings):
    """``ReferenceSettings`` plus the TRL adapter's fields (meanings in their ``help``).

    Here ``round(ts_ratio * B)`` candidate rows (capped at the dataset size) are drawn per generation,
    B = ``generation_batch_size // num_generations``; with ``max_num_gen_batches`` >= 1 (dynamic
    sampling) per generation round, each round rolling out B prompts.
    """

    success_reward: str | None = help_field(
        None, "Name of the reward function whose output success_rule judges (e.g. an accuracy reward beside a "
              "format reward; None returned by it = no verdict, not evidence); None = the reward_weights-weighted "
              "sum of all reward functions.")
    dynamic_sampling_round_prompts: int | None = help_field(
        None, "With max_num_gen_batches >= 1, prompts rolled out per round (DAPO's gen_batch_size; its recipe rolls "
              "out 3x the trained prompts per round): fewer, larger rounds. At least B = generation_batch_size // "
              "num_generations; None = B.")
    id_column: str | None = help_field(
        None, "Dataset column with a stable, unique prompt id per row (int >= 0 or str); None = row position. Use "
              "a column when a prior file, a feature file or a later run must match prompts.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dynamic_sampling_round_prompts is not None:
            self.dynamic_sampling_round_prompts = check_integer(self.dynamic_sampling_round_prompts,
                                                                "dynamic_sampling_round_prompts", minimum=1)


@dataclass
class MoPPSConfig(TrlSelectionSettings):
    """Deprecated: the separate selection config of mopps 0.1 (``MoPPSGRPOTrainer(..., mopps=MoPPSConfig(...))``).
    Put the same fields into ``MoPPSGRPOConfig`` (TRL's ``args``) instead; its ``seed`` is TRL's."""

    def __post_init__(self) -> None:
        warnings.warn("MoPPSConfig is deprecated: pass the same fields to mopps.integrations.trl.MoPPSGRPOConfig "
                      "(a GRPOConfig) as args=", DeprecationWarning, stacklevel=3)
        super().__post_init__()
