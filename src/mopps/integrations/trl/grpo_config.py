"""``MoPPSGRPOConfig``: TRL's ``GRPOConfig`` with the prompt-selection fields, in TRL's own idiom.

    from mopps.integrations.trl import MoPPSGRPOConfig
    args = MoPPSGRPOConfig(output_dir="runs/x", num_generations=8, ts_ratio=8, bandit_decay_ratio=0.5)
    # or from the command line / a YAML file, like any TRL config:
    args, = TrlParser(MoPPSGRPOConfig).parse_args_and_config()   # --ts_ratio 8 / ts_ratio: 8 in --config

The fields are those of ``mopps.integrations.trl.config.TrlSelectionSettings`` (defined there without
trl; the shared ones are ``mopps.selectors.settings.ReferenceSettings``, verl's ``mopps.*`` keys) with
their ``help``. This module imports trl; the package imports it only when ``MoPPSGRPOConfig`` is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import GRPOConfig

from mopps.integrations.trl.config import TrlSelectionSettings

__all__ = ["MoPPSGRPOConfig"]


# GRPOConfig comes first so that its fields are collected last: TRL's ``seed`` (an int, default 42)
# replaces ReferenceSettings' optional one, so the run has exactly one seed.
@dataclass
class MoPPSGRPOConfig(GRPOConfig, TrlSelectionSettings):
    """``GRPOConfig`` + ``TrlSelectionSettings``: every TRL field, plus ``ts_ratio``, ``bandit_*``,
    ``prior_*``, ``success_rule``, ``success_threshold``, ``selector_class``, ``selector_kwargs``,
    ``features_path``, ``features_column``, ``success_reward``, ``id_column`` (see their ``help``).
    ``seed`` seeds TRL, the selector and the candidate order. Validated on construction; errors name
    the field."""

    def __post_init__(self) -> None:
        super().__post_init__()  # GRPOConfig's and TrainingArguments', which do not chain further
        TrlSelectionSettings.__post_init__(self)
