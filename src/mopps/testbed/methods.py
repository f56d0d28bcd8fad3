"""The selectors the testbed compares, by name, as the bench's ``--selectors`` spells them.

``candidates`` is how many candidates per trained prompt a method draws from the shuffled stream
(the reference's ``ts_ratio`` for MoPPS and the oracle; 1 for Uniform, whose random pick from more
candidates would be the same distribution; DS draws whole generation batches of B instead).
``features`` names the per-prompt features the run registers with the selector before training
(``mopps.testbed.features``), or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mopps.selectors import ContextualMoPPS, DynamicSampling, HistoryFilter, MoPPS, Oracle, Selector, Uniform

METHODS = ("uniform", "ds", "mopps", "mopps_lambda0.5", "mopps_threshold", "history", "oracle", "contextual",
           "contextual_nofeatures", "contextual_taskfeatures")


@dataclass(frozen=True)
class Method:
    """A selector built for one run and the number of candidates it draws per trained prompt."""

    selector: Selector
    candidates: int
    features: str | None = None


def build_method(name: str, seed: int, ts_ratio: int, ds_max_gen_batches: int,
                 success_rate: Callable[[np.ndarray], np.ndarray]) -> Method:
    """The selector called ``name`` (one of ``METHODS``), seeded with ``seed``.

    ``success_rate(ids)`` returns exact success rates of pool ids under the current policy; only the
    oracle uses it.
    """
    if name == "uniform":
        return Method(Uniform(seed=seed), 1)
    if name == "ds":
        return Method(DynamicSampling(max_num_gen_batches=ds_max_gen_batches, seed=seed), 1)
    if name == "mopps":
        return Method(MoPPS(discount=1.0, strategy="topk", seed=seed), ts_ratio)
    if name == "mopps_lambda0.5":
        return Method(MoPPS(discount=0.5, strategy="topk", seed=seed), ts_ratio)
    if name == "mopps_threshold":
        return Method(MoPPS(discount=1.0, strategy="threshold", seed=seed), ts_ratio)
    if name == "history":
        return Method(HistoryFilter(seed=seed), ts_ratio)
    if name == "oracle":
        return Method(Oracle(success_rate=success_rate, seed=seed), ts_ratio)
    if name == "contextual":
        return Method(ContextualMoPPS(seed=seed), ts_ratio, features="generic")
    if name == "contextual_nofeatures":
        return Method(ContextualMoPPS(seed=seed), ts_ratio)
    if name == "contextual_taskfeatures":
        return Method(ContextualMoPPS(seed=seed), ts_ratio, features="task")
    raise ValueError(f"method = {name!r}; method must be one of {METHODS}")
