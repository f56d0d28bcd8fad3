"""The contextual model's arithmetic against brute force: joint Gaussian conditioning, the Laplace
mode on a grid, numerical integrals, and the dynamics' limits."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mopps.core.contextual import (
    ContextualModel,
    GlobalLayout,
    advance_global,
    age_residuals,
    assimilate,
    binomial_site,
    decay_counts,
    design_rows,
    expected_rate,
    fit_feature_transform,
    logit_moments,
    sigmoid,
    thompson_logits,
)


def _random_problem(seed, size, count):
    rng = np.random.default_rng(seed)
    root = rng.standard_normal((size, size))
    theta_cov = root @ root.T + 0.3 * np.eye(size)
    return (rng.standard_normal(size), theta_cov, rng.standard_normal((count, size)), rng.standard_normal(count),
            rng.uniform(0.05, 3.0, count), rng.standard_normal(count) * 2, rng.uniform(0.05, 5.0, count))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 7), count=st.integers(1, 9))
def test_assimilate_equals_joint_gaussian_conditioning(seed, size, count):
    theta_mean, theta_cov, rows, u_mean, u_var, site_mean, site_var = _random_problem(seed, size, count)
    # Brute force: the joint Gaussian of (theta, u_1..u_m), observed through y = A theta + u + e.
    joint_mean = np.concatenate([theta_mean, u_mean])
    joint_cov = np.zeros((size + count, size + count))
    joint_cov[:size, :size] = theta_cov
    joint_cov[size:, size:] = np.diag(u_var)
    observe = np.concatenate([rows, np.eye(count)], axis=1)
    innovation_cov = observe @ joint_cov @ observe.T + np.diag(site_var)
    gain = joint_cov @ observe.T @ np.linalg.inv(innovation_cov)
    post_mean = joint_mean + gain @ (site_mean - observe @ joint_mean)
    post_cov = joint_cov - gain @ observe @ joint_cov

    new_theta_mean, new_theta_cov, new_u_mean, new_u_var = assimilate(
        theta_mean, theta_cov, rows, u_mean, u_var, site_mean, site_var)
    np.testing.assert_allclose(new_theta_mean, post_mean[:size], atol=1e-8)
    np.testing.assert_allclose(new_theta_cov, post_cov[:size, :size], atol=1e-8)
    np.testing.assert_allclose(new_u_mean, post_mean[size:], atol=1e-8)
    np.testing.assert_allclose(new_u_var, np.diag(post_cov)[size:], atol=1e-8)


def _exact_posterior_moments(prior_mean, prior_var, successes, trials, grid):
    """Mean and variance of the logit's posterior by brute force on a fine uniform grid."""
    log_posterior = (successes * grid - trials * np.logaddexp(0.0, grid)
                     - (grid - prior_mean) ** 2 / (2.0 * prior_var))
    weights = np.exp(log_posterior - log_posterior.max())
    weights /= weights.sum()
    mean = float((grid * weights).sum())
    return mean, float(((grid - mean) ** 2 * weights).sum())


def _site_posterior_moments(prior_mean, prior_var, successes, trials):
    """Mean and variance of prior x binomial_site's Gaussian site."""
    site_mean, site_var = binomial_site(np.array([prior_mean]), np.array([prior_var]), np.array([successes]),
                                        np.array([float(trials)]))
    post_var = 1.0 / (1.0 / prior_var + 1.0 / site_var[0])
    return post_var * (prior_mean / prior_var + site_mean[0] / site_var[0]), post_var


@settings(max_examples=60, deadline=None)
@given(prior_mean=st.floats(-6, 6), prior_sd=st.floats(0.1, 4), trials=st.integers(1, 64),
       fraction=st.floats(0, 1))
# Skewed posteriors (a wide prior far out, no or all successes) where a 20-node Gauss-Hermite rule
# around the Laplace mode was off by up to 4.6e-3 (1 + sd) in the mean and 9.5e-3 in the variance.
@example(prior_mean=-6.0, prior_sd=4.0, trials=8, fraction=0.0)
@example(prior_mean=6.0, prior_sd=4.0, trials=8, fraction=1.0)
@example(prior_mean=-5.5, prior_sd=4.0, trials=64, fraction=0.0)
@example(prior_mean=5.77, prior_sd=3.75, trials=10, fraction=1.0)
@example(prior_mean=-6.0, prior_sd=3.5, trials=64, fraction=0.0)
def test_binomial_site_matches_the_exact_posterior_moments(prior_mean, prior_sd, trials, fraction):
    # Moment matching: prior x site has the exact posterior's mean and variance (numerical integral).
    # binomial_site's documented error in this range is below 1e-8 (1 + sd) and 3e-8 relative; the
    # tolerance is 100 times that, room for the reference grid's own error.
    successes = fraction * trials
    prior_var = prior_sd**2
    post_mean, post_var = _site_posterior_moments(prior_mean, prior_var, successes, trials)
    exact_mean, exact_var = _exact_posterior_moments(prior_mean, prior_var, successes, trials,
                                                     np.linspace(-40.0, 40.0, 400_001))
    assert post_mean == pytest.approx(exact_mean, abs=1e-6 * (1 + np.sqrt(exact_var)))
    assert post_var == pytest.approx(exact_var, rel=3e-6)
    assert 0.0 < post_var < prior_var


@pytest.mark.parametrize("prior_mean, prior_sd, trials, fraction", [
    (-12.0, 10.0, 8, 0.0), (12.0, 10.0, 8, 1.0), (-11.76, 8.46, 8, 0.0), (12.0, 10.0, 1024, 1.0),
    (-12.0, 10.0, 1, 0.0), (-12.0, 10.0, 64, 1.0 / 64), (0.0, 10.0, 1024, 0.5)])
def test_binomial_site_stays_accurate_for_wide_priors(prior_mean, prior_sd, trials, fraction):
    # Beyond the property test's range the documented bound is 2e-5 (1 + sd) and 3e-5 relative; the
    # first cases are the worst measured (no or all successes under a wide prior far out).
    successes = fraction * trials
    post_mean, post_var = _site_posterior_moments(prior_mean, prior_sd**2, successes, trials)
    exact_mean, exact_var = _exact_posterior_moments(prior_mean, prior_sd**2, successes, trials,
                                                     np.linspace(-200.0, 200.0, 400_001))
    assert post_mean == pytest.approx(exact_mean, abs=2e-5 * (1 + np.sqrt(exact_var)))
    assert post_var == pytest.approx(exact_var, rel=3e-5)


@pytest.mark.parametrize("mean, var", [(0.0, 0.0), (1.5, 0.5), (-2.0, 3.0), (4.0, 9.0), (0.3, 25.0)])
def test_expected_rate_matches_numerical_integral(mean, var):
    grid = np.linspace(-60, 60, 400_001)
    if var == 0.0:
        exact = float(sigmoid(mean))
    else:
        density = np.exp(-((grid - mean) ** 2) / (2 * var))
        exact = float((sigmoid(grid) * density).sum() / density.sum())
    assert expected_rate(mean, var) == pytest.approx(exact, abs=0.02)


def test_predictions_rise_with_ability_and_widen_with_uncertainty():
    layout = GlobalLayout(trend=False, feature_dim=2)
    model = ContextualModel()
    theta_mean, theta_cov = model.initial_global(layout)
    rows = design_rows(layout, np.array([0.0, 2.0]), np.array([False, True]), np.array([[0.5, -1.0], [0.0, 0.0]]))
    u_mean, u_var = np.array([0.2, -0.4]), np.array([0.5, 1.0])
    low = expected_rate(*logit_moments(theta_mean, theta_cov, rows, u_mean, u_var))
    theta_mean = theta_mean.copy()
    theta_mean[layout.ability] += 0.7
    mean, var = logit_moments(theta_mean, theta_cov, rows, u_mean, u_var)
    assert np.all(expected_rate(mean, var) > low)
    np.testing.assert_allclose(mean, rows @ theta_mean + u_mean)
    wider = logit_moments(theta_mean, theta_cov * 2.0, rows, u_mean, u_var)[1]
    assert np.all(wider > var)


def test_staleness_widens_the_residual_toward_the_prior():
    elapsed = np.array([0, 1, 10, 100, 10_000])
    mean, var = age_residuals(np.full(5, 2.0), np.full(5, 0.1), elapsed, residual_var=2.25, halflife=50.0)
    assert mean[0] == 2.0 and var[0] == pytest.approx(0.1)
    assert np.all(np.diff(var) > 0) and np.all(np.diff(mean) < 0)
    assert mean[-1] == pytest.approx(0.0, abs=1e-12) and var[-1] == pytest.approx(2.25)
    assert mean[3] == pytest.approx(2.0 * 0.25)  # two half-lives
    same_mean, same_var = age_residuals(np.full(5, 2.0), np.full(5, 0.1), elapsed, 2.25, None)
    assert np.all(same_mean == 2.0) and np.all(same_var == 0.1)
    np.testing.assert_allclose(decay_counts(np.full(5, 4.0), elapsed, 10.0)[:3], [4.0, 4.0 * 2 ** -0.1, 2.0])


def test_advance_global_is_f_p_ft_plus_q():
    layout = GlobalLayout(trend=True, feature_dim=3)
    theta_mean, theta_cov, *_ = _random_problem(3, layout.size, 1)
    process = ContextualModel(trend=True).process_var(layout)
    transition = np.eye(layout.size)
    transition[layout.ability, layout.trend_position] = 1.0
    mean, cov = advance_global(layout, theta_mean, theta_cov, process)
    np.testing.assert_allclose(mean, transition @ theta_mean)
    np.testing.assert_allclose(cov, transition @ theta_cov @ transition.T + np.diag(process), atol=1e-12)
    flat = GlobalLayout(trend=False, feature_dim=0)
    mean, cov = advance_global(flat, np.array([1.0, 2.0]), np.eye(2), np.array([0.5, 0.0]))
    np.testing.assert_allclose(mean, [1.0, 2.0])
    np.testing.assert_allclose(cov, np.diag([1.5, 1.0]))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_thompson_draws_follow_the_posterior_scaled_by_temperature(temperature):
    theta_mean, theta_cov, rows, u_mean, u_var, *_ = _random_problem(7, 4, 3)
    rng = np.random.default_rng(0)
    draws = np.array([thompson_logits(theta_mean, theta_cov, rows, u_mean, u_var, rng, temperature)
                      for _ in range(20_000)])
    mean, var = logit_moments(theta_mean, theta_cov, rows, u_mean, u_var)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.06 * np.sqrt(var).max())
    np.testing.assert_allclose(draws.var(axis=0), temperature**2 * var, rtol=0.05)
    # One shared draw of theta: candidates with similar rows move together.
    expected_cov = temperature**2 * rows @ theta_cov @ rows.T
    np.testing.assert_allclose(np.cov(draws.T)[0, 1], expected_cov[0, 1], atol=0.06 * np.abs(expected_cov).max())


def test_feature_transform_standardizes_and_projects_reproducibly():
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((500, 5)) * [1.0, 10.0, 0.1, 3.0, 1.0] + [5.0, -2.0, 0.0, 100.0, 1.0]
    raw[:, 4] = 7.0  # a constant column keeps scale 1
    matrix, offset = fit_feature_transform(raw, dim=64, projection_seed=0)
    standardized = raw @ matrix - offset
    np.testing.assert_allclose(standardized.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(standardized.std(axis=0), [1, 1, 1, 1, 0], atol=1e-9)

    wide = rng.standard_normal((300, 200)) @ rng.standard_normal((200, 200))
    matrix, offset = fit_feature_transform(wide, dim=16, projection_seed=4)
    projected = wide @ matrix - offset
    assert projected.shape == (300, 16)
    np.testing.assert_allclose(projected.std(axis=0), 1.0, atol=1e-9)
    again, _ = fit_feature_transform(wide, dim=16, projection_seed=4)
    other, _ = fit_feature_transform(wide, dim=16, projection_seed=5)
    np.testing.assert_array_equal(matrix, again)
    assert not np.allclose(matrix, other)


def test_layout_positions_are_distinct_and_cover_theta():
    for trend in (False, True):
        for dim in (0, 1, 5):
            layout = GlobalLayout(trend=trend, feature_dim=dim)
            used = [layout.ability, layout.jump] + ([layout.trend_position] if trend else [])
            if dim:
                used += [layout.missing] + list(range(layout.size)[layout.weights])
            assert sorted(used) == list(range(layout.size))


def test_extending_theta_keeps_what_was_learned():
    model = ContextualModel()
    flat = GlobalLayout(trend=False, feature_dim=0)
    wide = GlobalLayout(trend=False, feature_dim=4)
    mean, cov = np.array([1.0, 0.3]), np.array([[0.2, 0.05], [0.05, 0.1]])
    new_mean, new_cov = model.extend_global(flat, wide, mean, cov)
    np.testing.assert_array_equal(new_mean[:2], mean)
    np.testing.assert_array_equal(new_cov[:2, :2], cov)
    assert np.all(new_cov[:2, 2:] == 0)
    assert new_cov[wide.weights, wide.weights].trace() == pytest.approx(model.feature_sd**2)


@pytest.mark.parametrize("field, value", [("ability_sd", 0.0), ("residual_sd", -1.0), ("ability_step_sd", float("nan")),
                                          ("residual_halflife", 0.0), ("training_halflife", -3.0), ("trend", 1),
                                          ("feature_sd", "big")])
def test_model_rejects_bad_hyperparameters(field, value):
    with pytest.raises(ValueError, match=field):
        ContextualModel(**{field: value})
