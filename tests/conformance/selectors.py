"""The built-in selectors the conformance suite runs against: name -> (factory(seed), load kwargs)."""

from __future__ import annotations

import numpy as np

from mopps import ContextualMoPPS, HistoryFilter, MoPPS, Oracle, Uniform


def true_rate(ids) -> np.ndarray:
    """A deterministic stand-in for exact success rates in [0, 1], for int or str ids."""
    if isinstance(ids, np.ndarray):
        return (ids % 11) / 10.0
    return np.array([(sum(map(ord, value)) % 11) / 10.0 for value in ids])


SELECTORS = {
    "mopps_topk": (lambda seed: MoPPS(seed=seed), {}),
    "mopps_discounted": (lambda seed: MoPPS(discount=0.5, prior=(2.0, 1.0), seed=seed), {}),
    "mopps_threshold": (lambda seed: MoPPS(strategy="threshold", seed=seed), {}),
    "mopps_learnability": (lambda seed: MoPPS(strategy="learnability", seed=seed), {}),
    "mopps_greedy_mean": (lambda seed: MoPPS(strategy="greedy_mean", seed=seed), {}),
    "uniform": (lambda seed: Uniform(seed=seed), {}),
    "oracle": (lambda seed: Oracle(true_rate, seed=seed), {"success_rate": true_rate}),
    "oracle_scheduled": (lambda seed: Oracle(true_rate, target=[[0, 0.8], [4, 0.3]], seed=seed),
                         {"success_rate": true_rate}),
    "mopps_scheduled": (lambda seed: MoPPS(target=[[0, 0.8], [4, 0.3]], seed=seed), {}),
    "history": (lambda seed: HistoryFilter(seed=seed), {}),
    "history_explore": (lambda seed: HistoryFilter(explore=0.3, seed=seed), {}),
    "mopps_explore": (lambda seed: MoPPS(explore=0.2, seed=seed), {}),
    "mopps_auto": (lambda seed: MoPPS(discount="auto", seed=seed), {}),
    "mopps_auto_prior": (lambda seed: MoPPS(discount="auto", prior=(2.0, 1.0), strategy="greedy_mean", seed=seed), {}),
    "uniform_auto": (lambda seed: Uniform(discount="auto", seed=seed), {}),
    "mopps_threshold_explore": (lambda seed: MoPPS(strategy="threshold", explore=0.5, seed=seed), {}),
    "contextual_explore": (lambda seed: ContextualMoPPS(explore=0.25, seed=seed), {}),
    "contextual_auto_halflife": (lambda seed: ContextualMoPPS(model={"residual_halflife": "auto"}, seed=seed), {}),
    "contextual": (lambda seed: ContextualMoPPS(seed=seed), {}),
    "contextual_greedy_trend": (lambda seed: ContextualMoPPS(temperature=0.0, model={"trend": True},
                                                             target=[[1, 0.6], [3, 0.4]], seed=seed), {}),
    "mopps_informative": (lambda seed: MoPPS(discount=0.5, strategy="informative", group_size=4, seed=seed), {}),
    "contextual_informative": (lambda seed: ContextualMoPPS(strategy="informative", explore=0.1, seed=seed), {}),
    "mopps_perturbed": (lambda seed: MoPPS(discount=0.5, strategy="perturbed", noise_sd=0.7, seed=seed), {}),
    "contextual_perturbed": (lambda seed: ContextualMoPPS(strategy="perturbed", seed=seed), {}),
}

# Selectors that key learned state by prompt id, so they fix the id kind at first use.
KEYED_BY_ID = ("mopps_topk", "mopps_scheduled", "mopps_discounted", "mopps_threshold", "mopps_learnability",
               "mopps_greedy_mean", "mopps_explore", "mopps_threshold_explore", "mopps_auto", "mopps_auto_prior",
               "uniform", "uniform_auto", "history", "history_explore", "contextual", "contextual_greedy_trend",
               "contextual_explore", "contextual_auto_halflife", "mopps_informative", "contextual_informative",
               "mopps_perturbed", "contextual_perturbed")
