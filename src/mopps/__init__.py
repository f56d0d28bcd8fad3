"""mopps: online prompt selection for RL finetuning of reasoning models.

The core needs numpy only; trainers, tasks and the testbed live in optional layers. A host drives a
``SelectionLoop`` (``next`` -> roll out -> ``observe``); ``Refill`` adds dynamic sampling on top.
"""

from mopps.core.evidence import Observations, SuccessRule, aggregate_rollouts
from mopps.loop import Batch, Refill, SelectionLoop
from mopps.selectors import (
    ContextualMoPPS,
    HistoryFilter,
    MoPPS,
    Oracle,
    Selection,
    Selector,
    Uniform,
)

__version__ = "0.1.0"

__all__ = [
    "Batch", "ContextualMoPPS", "HistoryFilter", "MoPPS", "Observations", "Oracle", "Refill", "Selection", "SelectionLoop", "Selector",
    "SuccessRule", "Uniform", "aggregate_rollouts", "__version__",
]
