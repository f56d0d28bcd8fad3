"""Learned forgetting against fixed forgetting, on simulators whose success logits drift at a known speed.

Two tables (the figures in ``docs/forgetting.md``):

1. ``MoPPS`` with lambda = 1, lambda = 0.5 and ``discount="auto"`` on 200 prompts whose success
   logits (initially N(0, 1.5^2)) take a random walk of sd 0, 0.05 or 0.15 per policy tick: each
   tick 64 candidates are drawn, 16 chosen, 8 rollouts each, then ``policy_updated``. Reported over
   the second half of 300 ticks, mean of 3 seeds: the Brier score and Spearman of the candidates'
   predicted rates against their true rates, and the learned drift q (logit^2 per tick; truth sd^2).
2. ``ContextualMoPPS`` with the residual half-life 200 (default), ``"auto"`` and 20, on 300 prompts
   with 4 features (weights N(0, 0.5^2)) plus an own logit N(0, 1) that drifts by sd 0, 0.15 or 0.4
   per tick; same loop, 2 seeds; also the learned half-life (truth: 2 ln 2 * 1.5^2 / sd^2 ticks).

Run: ``python benchmarks/forgetting.py`` (about 6 s on one core).
"""

from __future__ import annotations

import numpy as np

from mopps import ContextualMoPPS, MoPPS
from mopps.testbed.drift import drift_tracking


def main() -> None:
    print("MoPPS, 200 prompts, 3 seeds: Brier / Spearman over candidates, learned q (logit^2 per tick)")
    print(f"{'logit sd/tick':>13} {'discount':>9} {'Brier':>7} {'Spearman':>8} {'q':>8}")
    for logit_sd in (0.0, 0.05, 0.15):
        for discount in (1.0, 0.5, "auto"):
            selectors = [MoPPS(discount=discount, seed=seed) for seed in range(3)]
            scores = np.mean([drift_tracking(selector, logit_sd, seed, 200) for seed, selector in enumerate(selectors)], 0)
            q = np.mean([selector.drift_variance() for selector in selectors]) if discount == "auto" else float("nan")
            print(f"{logit_sd:>13} {discount!s:>9} {scores[0]:>7.4f} {scores[1]:>8.3f} {q:>8.4f}")
    print()
    print("ContextualMoPPS, 300 prompts with features, own logit drifting, 2 seeds; learned half-life (ticks)")
    print(f"{'logit sd/tick':>13} {'half-life':>9} {'Brier':>7} {'Spearman':>8} {'learned':>14}")
    for logit_sd in (0.0, 0.15, 0.4):
        for halflife in (200.0, "auto", 20.0):
            selectors = [ContextualMoPPS(seed=seed, model={"residual_halflife": halflife}) for seed in range(2)]
            scores = np.mean([drift_tracking(selector, logit_sd, seed, 300, features=True)
                              for seed, selector in enumerate(selectors)], 0)
            learned = " ".join("never" if h is None else f"{h:.0f}" for h in
                               (selector.residual_halflife() for selector in selectors)) if halflife == "auto" else ""
            print(f"{logit_sd:>13} {halflife!s:>9} {scores[0]:>7.4f} {scores[1]:>8.3f} {learned:>14}")


if __name__ == "__main__":
    main()
