import numpy as np
import pytest

from mopps import HistoryFilter, Oracle


def test_oracle_picks_the_true_rates_closest_to_the_target():
    rates = np.linspace(0, 1, 11)
    oracle = Oracle(lambda ids: rates[ids], target=0.5)
    choice = oracle.select(np.arange(11), 3)
    assert choice.ids.tolist() == [5, 4, 6]
    np.testing.assert_array_equal(choice.predicted_rate, rates)
    bad = Oracle(lambda ids: np.full(len(ids), 1.5))
    with pytest.raises(ValueError, match="rates must lie in"):
        bad.select(np.arange(3), 1)


def test_history_filter_never_skips_unseen_and_skips_zero_variance_history():
    selector = HistoryFilter(initial_skip=1.0, adapt_step=0.0, seed=0)
    selector.update(np.arange(10), np.where(np.arange(10) < 5, 8.0, 0.0), np.full(10, 8.0))
    choice = selector.select(np.arange(20), 10)
    assert sorted(choice.ids.tolist()) == list(range(10, 20))
    # Fewer than k survivors: skipped candidates fill the rest.
    assert len(selector.select(np.arange(12), 5).ids) == 5


def test_history_filter_adapts_skip_probabilities_toward_the_target():
    selector = HistoryFilter(target_zero_variance=0.2, initial_skip=0.5, adapt_step=0.1)
    selector.update(np.arange(10), np.full(10, 8.0), np.full(10, 8.0))  # all easy
    assert selector.state.skip_easy == pytest.approx(0.6)
    assert selector.state.skip_hard == pytest.approx(0.4)
    with pytest.raises(ValueError, match="min_skip"):
        HistoryFilter(min_skip=0.9, max_skip=0.1)
