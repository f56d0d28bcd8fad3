"""Prediction scores against exact rates, calibration counts, and rate matching for self-influence."""

import numpy as np
import pytest

from mopps.testbed.measure import calibration_counts, logit, nearest_by_rate, prediction_scores


def test_scores_are_proper_the_exact_rate_scores_best():
    rng = np.random.default_rng(0)
    exact = rng.random(500)
    truth = prediction_scores(exact, exact)
    assert truth["spearman"] == pytest.approx(1.0)
    assert truth["brier"] == pytest.approx(np.mean(exact * (1 - exact)))  # the irreducible part
    for predicted in (np.clip(exact + rng.normal(0, 0.1, 500), 0, 1), np.full(500, 0.5), 1 - exact):
        worse = prediction_scores(predicted, exact)
        assert worse["brier"] > truth["brier"] and worse["logloss"] > truth["logloss"]
    assert prediction_scores(1 - exact, exact)["spearman"] == pytest.approx(-1.0)


def test_scores_by_hand_and_without_a_prediction():
    scores = prediction_scores(np.array([0.5, 0.25]), np.array([1.0, 0.0]))
    assert scores["brier"] == pytest.approx((0.25 + 0.0625) / 2)
    assert scores["logloss"] == pytest.approx((np.log(2) - np.log(0.75)) / 2)
    # A certain wrong prediction is finite (clipped), not inf.
    assert np.isfinite(prediction_scores(np.array([0.0]), np.array([1.0]))["logloss"])
    assert all(np.isnan(value) for value in prediction_scores(None, np.array([0.3])).values())


def test_calibration_counts_bin_the_prediction():
    counts = calibration_counts(np.array([0.05, 0.07, 0.55, 1.0]), np.array([0.0, 0.2, 0.5, 0.9]))
    assert counts.shape == (10, 3)
    assert counts[0].tolist() == pytest.approx([2, 0.12, 0.2])
    assert counts[5].tolist() == pytest.approx([1, 0.55, 0.5])
    assert counts[9].tolist() == pytest.approx([1, 1.0, 0.9])  # 1.0 falls in the last bin
    assert counts[:, 0].sum() == 4
    assert not calibration_counts(None, np.array([0.1])).any()


def test_nearest_by_rate_picks_the_closest_reservoir_prompt():
    reservoir = np.array([0.9, 0.1, 0.5, 0.52, 0.0])
    picked = nearest_by_rate(np.array([0.49, 0.515, 0.95, -0.1, 0.3, 0.12]), reservoir)
    assert picked.tolist() == [2, 3, 0, 4, 1, 1]
    assert nearest_by_rate(np.array([0.2, 0.8]), np.array([0.4])).tolist() == [0, 0]


def test_logit_is_finite_at_the_ends():
    values = logit(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.isfinite(values)) and values[1] == 0.0 and values[0] == pytest.approx(-values[2])
