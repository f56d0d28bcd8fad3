"""``selection_report``: the one set of metric names every integration logs."""

import math

import numpy as np
import pytest

from mopps.core.metrics import (
    GROUP_KEYS,
    PREDICTION_KEYS,
    SELECTION_REPORT_KEYS,
    group_metrics,
    prediction_metrics,
    selection_report,
)


def test_report_is_the_union_of_prediction_and_group_metrics():
    predicted = np.array([0.2, 0.5, 0.9])
    successes = np.array([0.0, 2.0, 4.0])
    trials = np.array([4.0, 4.0, 4.0])
    report = selection_report(predicted, successes, trials)
    assert tuple(report) == SELECTION_REPORT_KEYS == PREDICTION_KEYS + GROUP_KEYS
    assert report == {**prediction_metrics(predicted, successes, trials), **group_metrics(successes, trials)}
    assert report["zero_variance_frac"] == pytest.approx(2 / 3) and report["spearman"] == pytest.approx(1.0)


def test_without_predictions_the_prediction_keys_are_nan():
    report = selection_report(None, [1.0, 0.0], [2.0, 2.0])
    assert tuple(report) == SELECTION_REPORT_KEYS
    assert all(math.isnan(report[name]) for name in PREDICTION_KEYS)
    assert report["success_rate_mean"] == 0.25


def test_empty_batch_is_all_nan_and_bad_input_is_refused():
    assert all(math.isnan(value) for value in selection_report([], [], []).values())
    with pytest.raises(ValueError, match="trials"):
        selection_report([0.5], [1.0], [0.0])
    with pytest.raises(ValueError):
        selection_report([0.5, 0.5], [1.0], [1.0])
