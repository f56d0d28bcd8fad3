"""The selectors every conformance test runs against: name -> (factory, load kwargs)."""

from __future__ import annotations

import numpy as np

from mopps import ContextualMoPPS, DynamicSampling, HistoryFilter, MoPPS, Oracle, Uniform


def true_rate(ids) -> np.ndarray:
    """A deterministic stand-in for exact success rates, for ints or strings."""
    if isinstance(ids, np.ndarray):
        return (ids % 11) / 10.0 - np.where(ids % 11 == 10, 0.0, 0.0)
    return np.array([(sum(map(ord, value)) % 11) / 10.0 for value in ids])


def _rates(ids):
    return np.clip(true_rate(ids), 0.0, 1.0)


SELECTORS = {
    "mopps_topk": (lambda seed: MoPPS(seed=seed), {}),
    "mopps_discounted": (lambda seed: MoPPS(discount=0.5, prior=(2.0, 1.0), seed=seed), {}),
    "mopps_threshold": (lambda seed: MoPPS(strategy="threshold", seed=seed), {}),
    "mopps_learnability": (lambda seed: MoPPS(strategy="learnability", seed=seed), {}),
    "mopps_greedy_mean": (lambda seed: MoPPS(strategy="greedy_mean", seed=seed), {}),
    "uniform": (lambda seed: Uniform(seed=seed), {}),
    "oracle": (lambda seed: Oracle(_rates, seed=seed), {"success_rate": _rates}),
    "history": (lambda seed: HistoryFilter(seed=seed), {}),
    "dynamic_sampling": (lambda seed: DynamicSampling(max_num_gen_batches=4, seed=seed), {}),
    "contextual": (lambda seed: ContextualMoPPS(seed=seed), {}),
    "contextual_greedy_trend": (lambda seed: ContextualMoPPS(temperature=0.0, model={"trend": True}, seed=seed), {}),
}
