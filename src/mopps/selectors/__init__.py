"""The selector family, one protocol (``mopps.selectors.base.Selector``)."""

from mopps.selectors.base import Selection, Selector
from mopps.selectors.contextual import ContextualMoPPS
from mopps.selectors.dynamic_sampling import DynamicBatch, DynamicRound, DynamicSampling
from mopps.selectors.history_filter import HistoryFilter
from mopps.selectors.mopps import STRATEGIES, MoPPS, Uniform
from mopps.selectors.oracle import Oracle

__all__ = [
    "ContextualMoPPS", "DynamicBatch", "DynamicRound", "DynamicSampling", "HistoryFilter", "MoPPS", "Oracle",
    "STRATEGIES", "Selection", "Selector", "Uniform",
]
