"""mopps: online prompt selection for RL finetuning of reasoning models.

The core needs numpy only; trainers, tasks and the testbed live in optional layers.
"""

from mopps.core.evidence import Observations, SuccessRule, aggregate_rollouts
from mopps.selectors import (
    ContextualMoPPS,
    DynamicBatch,
    DynamicSampling,
    HistoryFilter,
    MoPPS,
    Oracle,
    Selection,
    Selector,
    Uniform,
)

__version__ = "0.1.0"

__all__ = [
    "ContextualMoPPS", "DynamicBatch", "DynamicSampling", "HistoryFilter", "MoPPS", "Observations", "Oracle",
    "Selection", "Selector", "SuccessRule", "Uniform", "aggregate_rollouts", "__version__",
]
