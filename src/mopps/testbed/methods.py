"""The selectors the testbed compares, by name, as the bench's ``--selectors`` spells them.

``candidates`` is how many candidates per trained prompt a method draws from the shuffled stream
(the reference's ``ts_ratio`` for MoPPS and the oracle; 1 for Uniform, whose random pick from more
candidates would be the same distribution). DS is Uniform choosing each generation batch of
``mopps.Refill`` (DAPO's dynamic sampling), at most ``max_num_gen_batches`` of them per step;
``mopps_ds`` and ``contextual_ds`` are the same refill with each generation batch pre-selected from
``ts_ratio`` times as many candidates. ``features`` names the per-prompt features the run registers
with the selector before training (``mopps.testbed.features``), or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mopps.selectors import ContextualMoPPS, HistoryFilter, MoPPS, Oracle, Selector, Uniform

METHODS = ("uniform", "ds", "mopps", "mopps_lambda0.5", "mopps_threshold", "history", "oracle", "contextual",
           "contextual_nofeatures", "contextual_taskfeatures", "mopps_ds", "contextual_ds")


@dataclass(frozen=True)
class Method:
    """A selector built for one run, the number of candidates it draws per trained prompt, the
    refill cap of dynamic sampling (None: the run trains on the one batch the selector chose), and
    the features it gets (``mopps.testbed.features.FEATURE_SOURCES``, or None)."""

    selector: Selector
    candidates: int
    max_num_gen_batches: int | None = None
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
        return Method(Uniform(seed=seed), 1, max_num_gen_batches=ds_max_gen_batches)
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
    if name == "mopps_ds":
        # lambda = 0.5, the better MoPPS on both presets (README), choosing each generation batch.
        return Method(MoPPS(discount=0.5, strategy="topk", seed=seed), ts_ratio,
                      max_num_gen_batches=ds_max_gen_batches)
    if name == "contextual_ds":
        return Method(ContextualMoPPS(seed=seed), ts_ratio, max_num_gen_batches=ds_max_gen_batches,
                      features="generic")
    raise ValueError(f"method = {name!r}; method must be one of {METHODS}")
