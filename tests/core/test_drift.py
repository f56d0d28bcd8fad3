"""Learned forgetting's arithmetic (mopps.core.drift)."""

from __future__ import annotations

import numpy as np
import pytest

from mopps.core.drift import drift_discount, drift_variance, exposure, innovation_excess
from mopps.core.posterior import discounted_update, posterior_mean, posterior_variance


def test_the_discount_ages_a_posterior_to_the_variance_the_drift_adds():
    # Prior mean = posterior mean, so the discounted Beta keeps the mean and only loses concentration.
    alpha, beta = np.array([20.0, 20.0, 20.0, 20.0]), np.array([20.0, 20.0, 20.0, 20.0])
    elapsed = np.array([0.0, 1.0, 10.0, 1e6])
    keep = drift_discount(alpha, beta, elapsed, 0.04, 1.0, 1.0)
    assert keep[0] == 1.0 and 1.0 > keep[1] > keep[2] > 0.0 and keep[3] == 0.0
    aged_alpha, aged_beta = discounted_update(alpha, beta, 0.0, 0.0, keep, 1.0, 1.0)
    wanted = posterior_variance(20.0, 20.0) + elapsed[:3] * 0.04 * 0.25**2
    np.testing.assert_allclose(posterior_variance(aged_alpha, aged_beta)[:3], wanted, rtol=1e-12)
    np.testing.assert_allclose(posterior_mean(aged_alpha, aged_beta), 0.5)
    # Nothing to forget: no drift, or a posterior no more concentrated than the prior.
    assert (drift_discount(alpha, beta, elapsed, 0.0, 1.0, 1.0) == 1.0).all()
    assert drift_discount(np.array([1.0]), np.array([1.0]), np.array([50.0]), 0.04, 1.0, 1.0)[0] == 1.0


def test_the_surprise_excess_is_unbiased_for_the_drift():
    # Prompts whose rate is exactly what a Beta(mean p) posterior of variance v says, observed after the
    # rate moved by a known variance d: the mean excess is d (and 0 without a move).
    rng = np.random.default_rng(0)
    count, trials = 400_000, 8.0
    alpha, beta = np.full(count, 12.0), np.full(count, 18.0)  # mean 0.4, v = 0.24 / 31
    before = rng.beta(alpha, beta)  # the truth, distributed as the posterior says
    for moved in (0.0, 0.01):
        after = np.clip(before + rng.normal(0.0, np.sqrt(moved), count), 0.0, 1.0)
        successes = rng.binomial(int(trials), after).astype(float)
        excess = innovation_excess(alpha, beta, successes, np.full(count, trials))
        assert excess.mean() == pytest.approx(moved, abs=6e-4)


def test_q_is_the_ratio_of_the_sums_and_never_negative():
    assert drift_variance(0.5, 0.0) == 0.0
    assert drift_variance(-0.3, 10.0) == 0.0
    assert drift_variance(0.5, 10.0) == 0.05
    np.testing.assert_allclose(exposure([1.0, 3.0], [1.0, 1.0], [4.0, 2.0]), [4 * 0.25**2, 2 * (0.75 * 0.25) ** 2])
