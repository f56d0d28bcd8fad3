import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import gammaln

from mopps.core.posterior import (
    beta_quantile,
    credible_interval,
    discounted_update,
    log_gamma,
    posterior_mean,
    posterior_variance,
    regularized_incomplete_beta,
    thompson_sample,
)

positive = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
unit = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=200, deadline=None)
@given(alpha=positive, beta=positive, prior_alpha=positive, prior_beta=positive, discount=unit,
       trials=st.integers(min_value=1, max_value=64), success_share=unit)
def test_update_matches_closed_form(alpha, beta, prior_alpha, prior_beta, discount, trials, success_share):
    successes = success_share * trials
    new_alpha, new_beta = discounted_update(np.array([alpha]), np.array([beta]), np.array([successes]),
                                            np.array([float(trials)]), discount, prior_alpha, prior_beta)
    assert new_alpha[0] == pytest.approx(discount * alpha + (1 - discount) * prior_alpha + successes)
    assert new_beta[0] == pytest.approx(discount * beta + (1 - discount) * prior_beta + trials - successes)
    # Evidence only adds: with discount 1 the total grows by exactly the trials.
    if discount == 1.0:
        assert new_alpha[0] + new_beta[0] == pytest.approx(alpha + beta + trials)


@settings(max_examples=100, deadline=None)
@given(updates=st.lists(st.tuples(st.integers(1, 16), unit), min_size=1, max_size=20))
def test_discount_one_is_plain_conjugate_counting(updates):
    alpha, beta = np.array([1.0]), np.array([1.0])
    for trials, share in updates:
        alpha, beta = discounted_update(alpha, beta, share * trials, float(trials), 1.0, 1.0, 1.0)
    total_successes = sum(share * trials for trials, share in updates)
    total_trials = sum(trials for trials, _ in updates)
    assert alpha[0] == pytest.approx(1.0 + total_successes)
    assert beta[0] == pytest.approx(1.0 + total_trials - total_successes)


def test_single_rollout_updates_are_not_discarded():
    # The reference sets alpha = beta = 8 whenever n == 1 (operator precedence); ours counts it.
    alpha, beta = discounted_update(np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]),
                                    0.5, 1.0, 1.0)
    assert (alpha[0], beta[0]) == (2.0, 1.0)


def test_update_does_not_mutate_inputs():
    alpha = np.array([2.0, 3.0])
    beta = np.array([1.0, 1.0])
    discounted_update(alpha, beta, np.array([1.0, 0.0]), np.array([2.0, 2.0]), 0.5, 1.0, 1.0)
    np.testing.assert_array_equal(alpha, [2.0, 3.0])


def test_moments_match_scipy():
    alpha = np.array([0.5, 1.0, 3.0, 40.0])
    beta = np.array([0.5, 2.0, 7.0, 1.0])
    np.testing.assert_allclose(posterior_mean(alpha, beta), stats.beta.mean(alpha, beta))
    np.testing.assert_allclose(posterior_variance(alpha, beta), stats.beta.var(alpha, beta))


def test_log_gamma_matches_scipy():
    x = np.geomspace(1e-4, 1e6, 200)
    np.testing.assert_allclose(log_gamma(x), gammaln(x), rtol=1e-10, atol=1e-10)


@settings(max_examples=100, deadline=None)
@given(alpha=st.floats(0.05, 500), beta=st.floats(0.05, 500), x=unit)
def test_incomplete_beta_matches_scipy(alpha, beta, x):
    ours = regularized_incomplete_beta(alpha, beta, x)
    assert float(ours) == pytest.approx(stats.beta.cdf(x, alpha, beta), abs=1e-9)


def test_credible_interval_matches_scipy():
    alpha = np.array([1.0, 2.0, 9.0, 0.7, 300.0])
    beta = np.array([1.0, 5.0, 1.0, 0.7, 120.0])
    lower, upper = credible_interval(alpha, beta, mass=0.9)
    np.testing.assert_allclose(lower, stats.beta.ppf(0.05, alpha, beta), atol=1e-9)
    np.testing.assert_allclose(upper, stats.beta.ppf(0.95, alpha, beta), atol=1e-9)
    assert beta_quantile(2.0, 2.0, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("mass", [0.0, 1.0, -0.1, 1.5])
def test_credible_interval_rejects_bad_mass(mass):
    with pytest.raises(ValueError, match="mass"):
        credible_interval(1.0, 1.0, mass)


def test_thompson_draws_follow_the_posterior():
    rng = np.random.default_rng(0)
    draws = thompson_sample(np.full(200_000, 3.0), np.full(200_000, 7.0), rng)
    assert draws.mean() == pytest.approx(0.3, abs=2e-3)
    assert draws.var() == pytest.approx(stats.beta.var(3, 7), rel=2e-2)


def test_variance_stays_finite_for_huge_parameters():
    assert posterior_variance(1e200, 1e200) == pytest.approx(0.25 / (2e200 + 1.0))
