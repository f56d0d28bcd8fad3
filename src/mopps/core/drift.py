"""Learned forgetting: how fast prompts' success rates move, estimated from the run. Pure functions.

The model: each prompt's success logit moves like a random walk in policy ticks t (one tick = one
optimiser step, ``Selector.policy_updated``), with one drift variance ``q`` shared by all prompts,
in units of logit^2 per tick. On the rate scale, near a rate m, that is a variance of
g q (m (1 - m))^2 over g ticks (the logistic's slope is m (1 - m)): a prompt near 0 or 1 moves
little in rate for the same push on its logit, which is how training moves rates.

Estimating q (innovations): when a prompt with posterior mean m and variance v (its Beta as of its
last evidence, g ticks ago) is observed again with r = s / n, the squared surprise (r - m)^2 has
expectation p (1 - p) / n (binomial noise) + v (what the posterior did not know) + g q (m (1 - m))^2
(drift since). The noise has the unbiased estimate r (1 - r) / (n - 1), so

    excess = (r - m)^2 - r (1 - r) / (n - 1) - v

estimates g q (m (1 - m))^2 (``innovation_excess``; it needs n >= 2 and is negative about half the
time when nothing moves). Pooled over every revisit of every prompt,
q = max(0, sum of excess) / sum of g (m (1 - m))^2 (``drift_variance``; the moment estimator that
never divides by a small slope). Revisits within one tick (dynamic-sampling rounds) have no gap and
are left out, and so are first visits (the prior is not a calibrated belief about one prompt).
Because the surprise is measured against the posterior, choosing prompts by their posterior does not
bias it (comparing raw consecutive rates does: prompts are revisited because their last rate looked
close to the target), and it corrects itself: if q is too small the posteriors are over-confident,
the surprises too large, and q grows.

Forgetting: a Beta(alpha, beta) posterior with mean m and variance v, left alone for g ticks, should
have variance v + g q (m (1 - m))^2. The discounted update keeps the paper's form
(alpha <- lam alpha + (1 - lam) alpha0, the same for beta), and lam is set so that the concentration
alpha + beta becomes that of a Beta with mean m and that variance (``drift_discount``): a prompt
unseen for long forgets more, and one seen a tick ago almost nothing.
"""

from __future__ import annotations

import numpy as np


def innovation_excess(alpha, beta, successes, trials) -> np.ndarray:
    """Estimate of the variance (success rate^2) a prompt's rate gained since its posterior
    Beta(``alpha``, ``beta``) was formed, from a new observation of ``successes`` out of ``trials``
    (>= 2; callers leave out fewer): (r - m)^2 - r (1 - r) / (trials - 1) - v. All float (m,);
    returns float64 (m,)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    total = alpha + np.asarray(beta, dtype=np.float64)
    mean = alpha / total
    variance = mean * (1.0 - mean) / (total + 1.0)
    trials = np.asarray(trials, dtype=np.float64)
    rate = np.asarray(successes, dtype=np.float64) / trials
    return (rate - mean) ** 2 - rate * (1.0 - rate) / (trials - 1.0) - variance


def exposure(alpha, beta, elapsed) -> np.ndarray:
    """g (m (1 - m))^2 per entry, the factor by which q scales into a rate variance over ``elapsed``
    ticks near the posterior mean m of Beta(``alpha``, ``beta``); float64 (m,)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    mean = alpha / (alpha + np.asarray(beta, dtype=np.float64))
    return np.asarray(elapsed, dtype=np.float64) * (mean * (1.0 - mean)) ** 2


def drift_variance(excess_sum: float, gap_sum: float) -> float:
    """The pooled drift variance q, logit^2 per tick: max(0, excess_sum) / gap_sum (the sums of
    ``innovation_excess`` and of ``exposure`` over revisits), 0 while no revisit has been seen."""
    if gap_sum <= 0.0:
        return 0.0
    return max(float(excess_sum), 0.0) / float(gap_sum)


def drift_discount(alpha, beta, elapsed, drift_var: float, prior_alpha, prior_beta) -> np.ndarray:
    """The discount lam in [0, 1] per entry that ages Beta(alpha, beta) by ``elapsed`` ticks of drift.

    ``alpha``, ``beta``: float (m,) > 0; ``elapsed``: ticks since the entry's last evidence, float
    (m,) >= 0; ``drift_var``: q >= 0, logit^2 per tick; ``prior_alpha``, ``prior_beta``: the point the discount pulls
    toward (scalars or (m,)). lam = 1 where nothing elapsed, q is 0, or the posterior holds no more
    than the prior's concentration; lam = 0 (back to the prior) where the drift alone exceeds what
    the prior allows. Returns float64 (m,).
    """
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    total = alpha + beta
    prior_total = np.asarray(prior_alpha, dtype=np.float64) + np.asarray(prior_beta, dtype=np.float64)
    mean = alpha / total
    spread = mean * (1.0 - mean)
    variance = spread / (total + 1.0)
    added = exposure(alpha, beta, elapsed) * float(drift_var)
    with np.errstate(divide="ignore", invalid="ignore"):
        wanted_total = spread / (variance + added) - 1.0
        keep = (wanted_total - prior_total) / (total - prior_total)
    keep = np.where((added > 0.0) & (total > prior_total) & np.isfinite(keep), keep, 1.0)
    return np.clip(keep, 0.0, 1.0)
