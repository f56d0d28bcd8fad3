"""MoPPS inside TRL's ``GRPOTrainer`` (tested against trl 1.16.0, transformers 5.10).

    from mopps.integrations.trl import MoPPSGRPOConfig, MoPPSGRPOTrainer
    args = MoPPSGRPOConfig(output_dir=..., ts_ratio=8, bandit_decay_ratio=0.5, id_column="prompt_id")
    trainer = MoPPSGRPOTrainer(model=..., reward_funcs=..., args=args, train_dataset=...)

Names are imported on first use: ``import mopps.integrations.trl.config`` (the field definitions)
imports no trl; ``MoPPSGRPOConfig`` and ``MoPPSGRPOTrainer`` import trl (and torch) when touched.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "MoPPSGRPOTrainer": "trainer", "CHECKPOINT_FILE": "trainer", "MoPPSGRPOConfig": "grpo_config",
    "TrlSelectionSettings": "config", "MoPPSConfig": "config",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
