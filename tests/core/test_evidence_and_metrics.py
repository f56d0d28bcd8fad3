import numpy as np
import pytest
from scipy import stats

from mopps import SuccessRule, aggregate_rollouts
from mopps.core.metrics import group_metrics, prediction_metrics, spearman


def test_aggregate_sums_shuffled_rows_of_unequal_groups():
    ids = [5, 2, 5, 5, 2, 9]
    rewards = [1.0, 0.0, 0.1, 1.0, 1.0, 0.0]
    observations = aggregate_rollouts(ids, rewards)
    np.testing.assert_array_equal(observations.ids, [2, 5, 9])
    np.testing.assert_array_equal(observations.successes, [1.0, 2.0, 0.0])
    np.testing.assert_array_equal(observations.trials, [2.0, 3.0, 1.0])


def test_success_rules():
    rewards = np.array([1.0, 0.1, 0.0, -1.0])
    np.testing.assert_array_equal(SuccessRule().successes(rewards), [1, 0, 0, 0])
    np.testing.assert_array_equal(SuccessRule("threshold", 0.1).successes(rewards), [1, 1, 0, 0])
    np.testing.assert_array_equal(SuccessRule("sign").successes(rewards), [1, 1, 0, 0])
    np.testing.assert_array_equal(SuccessRule("fraction").successes(rewards[:3]), [1.0, 0.1, 0.0])
    with pytest.raises(ValueError, match=r"rewards\[3\]"):
        SuccessRule("fraction").successes(rewards)
    with pytest.raises(ValueError, match="kind"):
        SuccessRule("accuracy")


def test_aggregate_string_ids_and_errors():
    observations = aggregate_rollouts(["b", "a", "b"], [1.0, 1.0, 0.0])
    assert observations.ids == ["a", "b"]
    np.testing.assert_array_equal(observations.trials, [1.0, 2.0])
    with pytest.raises(ValueError, match="rewards"):
        aggregate_rollouts([1, 2], [1.0])
    with pytest.raises(ValueError, match=r"rewards\[1\]"):
        aggregate_rollouts([1, 2], [1.0, np.nan])


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 300).astype(float)
    y = x + rng.normal(size=300)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert np.isnan(spearman(np.ones(5), y[:5]))


def test_prediction_metrics_sign_and_brier():
    predicted = np.array([0.1, 0.5, 0.9])
    successes = np.array([0.0, 4.0, 8.0])
    trials = np.full(3, 8.0)
    metrics = prediction_metrics(predicted, successes, trials)
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["pearson"] > 0.99
    # Per rollout: (0.1-0)^2 for 8 rollouts, 0.25 for each of 8, (0.9-1)^2 for 8.
    assert metrics["brier"] == pytest.approx((0.01 * 8 + 0.25 * 8 + 0.01 * 8) / 24)
    assert all(np.isnan(value) for value in prediction_metrics([], [], []).values())


def test_group_metrics():
    metrics = group_metrics([0.0, 8.0, 3.0, 8.0], [8.0, 8.0, 8.0, 8.0])
    assert metrics["solve_none_frac"] == 0.25
    assert metrics["solve_all_frac"] == 0.5
    assert metrics["zero_variance_frac"] == 0.75
    assert metrics["success_rate_min"] == 0.0 and metrics["success_rate_max"] == 1.0


def test_metrics_refuse_misaligned_inputs():
    with pytest.raises(ValueError, match="len"):
        prediction_metrics([0.5, 0.1], [1.0], [2.0])
    with pytest.raises(ValueError, match=r"trials\[0\]"):
        group_metrics([0.0], [0.0])


def test_rollouts_without_a_verdict_are_no_evidence():
    ids = [5, 2, 5, 5, 2, 9]
    rewards = [1.0, np.nan, 0.0, 1.0, 1.0, np.nan]  # NaN where a grader timed out
    has_verdict = [True, False, True, True, True, False]
    observations = aggregate_rollouts(ids, rewards, has_verdict=has_verdict)
    # Prompt 9 had no verdict at all: absent, not trials = 0. Prompt 2 keeps one of its two rollouts.
    np.testing.assert_array_equal(observations.ids, [2, 5])
    np.testing.assert_array_equal(observations.successes, [1.0, 2.0])
    np.testing.assert_array_equal(observations.trials, [1.0, 3.0])
    # The graders' 0.0/1.0 floats are accepted as the mask; string ids too.
    strings = aggregate_rollouts(["b", "a", "b"], [1.0, 1.0, 0.0], has_verdict=np.array([1.0, 0.0, 1.0]))
    assert strings.ids == ["b"]
    np.testing.assert_array_equal(strings.trials, [2.0])
    nothing = aggregate_rollouts([1, 1], [np.nan, np.nan], has_verdict=[False, False])
    assert len(nothing.ids) == 0 and len(nothing.trials) == 0
    everything = aggregate_rollouts(ids, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0], has_verdict=[True] * 6)
    np.testing.assert_array_equal(everything.trials, aggregate_rollouts(ids, [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]).trials)


def test_a_bad_verdict_mask_is_refused_naming_the_position():
    with pytest.raises(ValueError, match=r"has_verdict\[1\] = 0.5"):
        aggregate_rollouts([1, 2], [1.0, 0.0], has_verdict=[1.0, 0.5])
    with pytest.raises(ValueError, match="has_verdict"):
        aggregate_rollouts([1, 2], [1.0, 0.0], has_verdict=[True])
    with pytest.raises(ValueError, match=r"rewards\[0\] = nan"):
        aggregate_rollouts([1, 2], [np.nan, 0.0], has_verdict=[True, True])
    with pytest.raises(ValueError, match=r"rewards\[1\] = 2.0"):
        aggregate_rollouts([1, 2, 3], [np.nan, 2.0, 0.5], SuccessRule("fraction"), has_verdict=[False, True, True])


def test_string_ids_differing_by_a_trailing_nul_are_two_prompts():
    observations = aggregate_rollouts(["a\0", "a", "a\0"], [1.0, 0.0, 1.0])
    assert observations.ids == ["a", "a\0"]
    assert observations.successes.tolist() == [0.0, 2.0] and observations.trials.tolist() == [1.0, 2.0]
