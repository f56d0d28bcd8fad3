"""A drifting-rate simulator: how well a selector tracks prompts whose success logits move.

No policy, no torch: each prompt's success logit is a number that takes a Gaussian step per policy
tick, so a selector's predictions can be scored against known, moving rates in seconds (the figures
of ``benchmarks/forgetting.py`` and the learned-forgetting tests). It belongs to the testbed, not to
the conformance suite (``mopps.testing``): it measures a selector, it checks no contract.
"""

from __future__ import annotations

import numpy as np

from mopps.core.metrics import spearman
from mopps.selectors.base import Selector


def drift_tracking(selector: Selector, logit_sd: float, seed: int, pool: int = 200, steps: int = 300,
                   features: bool = False, k: int = 16, candidates: int = 64, n: int = 8) -> tuple[float, float]:
    """How well ``selector`` tracks prompts whose success logits drift: ``(Brier, Spearman)`` of the
    candidates' predicted rates against their true rates, means over the second half of the run.

    Each of ``steps`` policy ticks: ``candidates`` of ``pool`` prompts are offered, ``k`` chosen, ``n``
    rollouts each observed (``update``), then ``policy_updated``; then every prompt's logit takes a
    Gaussian step of sd ``logit_sd`` (logit units per tick). Logits start N(0, 1.5^2); with
    ``features`` they are a shared part x @ w (x: 4 features per prompt, handed to the selector's
    ``add_features``; w ~ N(0, 0.5^2)) plus an own part N(0, 1), and only the own part drifts.
    ``seed`` fixes the simulator (the selector keeps its own generator).
    """
    rng = np.random.default_rng(seed)
    if features:
        x = rng.standard_normal((pool, 4))
        shared = x @ (rng.standard_normal(4) * 0.5)
        own = rng.normal(0.0, 1.0, pool)
        selector.add_features(np.arange(pool), x)
    else:
        shared, own = np.zeros(pool), rng.normal(0.0, 1.5, pool)
    briers, rhos = [], []
    for step in range(steps):
        offered = rng.choice(pool, candidates, replace=False)
        rates = 1.0 / (1.0 + np.exp(-(shared + own)))
        choice = selector.select(offered, k)
        if step >= steps // 2:
            briers.append(np.mean((choice.predicted_rate - rates[offered]) ** 2))
            rhos.append(spearman(choice.predicted_rate, rates[offered]))
        ids = np.asarray(choice.ids)
        selector.update(ids, rng.binomial(n, rates[ids]).astype(float), np.full(k, float(n)))
        selector.policy_updated()
        own = own + rng.normal(0.0, logit_sd, pool)
    return float(np.mean(briers)), float(np.mean(rhos))
