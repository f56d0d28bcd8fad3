"""MoPPS inside TRL's ``GRPOTrainer`` (tested against trl 1.16.0, transformers 5.10).

    from mopps.integrations.trl import MoPPSConfig, MoPPSGRPOTrainer
    trainer = MoPPSGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(...), train_dataset=...,
                               mopps=MoPPSConfig(ts_ratio=8, bandit_decay_ratio=0.5))

Importing this package imports ``trl`` (and torch); ``import mopps`` does not.
"""

from mopps.integrations.trl.candidates import CandidateStream
from mopps.integrations.trl.config import MoPPSConfig, read_pass_counts
from mopps.integrations.trl.trainer import ADAPTER_FILE, SELECTOR_FILE, MoPPSGRPOTrainer

__all__ = ["ADAPTER_FILE", "CandidateStream", "MoPPSConfig", "MoPPSGRPOTrainer", "SELECTOR_FILE", "read_pass_counts"]
