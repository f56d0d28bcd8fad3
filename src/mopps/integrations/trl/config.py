"""``MoPPSConfig``: the prompt-selection settings of ``MoPPSGRPOTrainer``, in one dataclass.

The selection fields (``ts_ratio``, ``bandit_*``, ``prior_*``, ``success_rule``,
``success_threshold``, ``seed``) are ``mopps.selectors.settings.ReferenceSettings``: the reference's
``tasksampler.*`` keys, with the same meaning and defaults as verl's ``mopps.*`` block. This class adds
what only TRL needs: which reward function is judged and which column names a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

from mopps.selectors.settings import ReferenceSettings, read_pass_counts

__all__ = ["MoPPSConfig", "read_pass_counts"]


@dataclass
class MoPPSConfig(ReferenceSettings):
    """Prompt-selection settings of ``MoPPSGRPOTrainer``: ``ReferenceSettings`` (see there) plus

    ``success_reward``: the name of the reward function whose output ``success_rule`` judges (e.g. an
    accuracy reward next to a format reward), or None for the `reward_weights`-weighted sum of all
    reward functions (raw, before any per-function normalisation TRL applies).
    ``id_column``: dataset column with a stable, unique prompt id per row (int >= 0 or str), or None
    to key prompts by row position. Use a column when a prior file or a later run must match prompts.

    Here ``round(ts_ratio * B)`` candidate rows (capped at the dataset size) are drawn per generation,
    B = ``generation_batch_size // num_generations``; ``seed`` None = ``GRPOConfig.seed``.
    """

    success_reward: str | None = None
    id_column: str | None = None
