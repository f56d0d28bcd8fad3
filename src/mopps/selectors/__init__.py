"""The selector family, one protocol (``mopps.selectors.base.Selector``)."""

from mopps.selectors.base import NoLearnedState, Selection, Selector
from mopps.selectors.contextual import ContextualMoPPS, ContextualState
from mopps.selectors.history_filter import HistoryFilter, HistoryState
from mopps.selectors.mopps import STRATEGIES, MoPPS, Uniform
from mopps.selectors.oracle import Oracle

__all__ = [
    "ContextualMoPPS", "ContextualState", "HistoryFilter", "HistoryState", "MoPPS", "NoLearnedState", "Oracle", "STRATEGIES", "Selection", "Selector",
    "Uniform",
]
