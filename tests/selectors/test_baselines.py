import numpy as np
import pytest

from mopps import DynamicSampling, HistoryFilter, Oracle


def test_oracle_picks_the_true_rates_closest_to_the_target():
    rates = np.linspace(0, 1, 11)
    oracle = Oracle(lambda ids: rates[ids], target=0.5)
    choice = oracle.select(np.arange(11), 3)
    assert choice.ids.tolist() == [5, 4, 6]
    np.testing.assert_array_equal(choice.predicted_rate, rates)
    bad = Oracle(lambda ids: np.full(len(ids), 1.5))
    with pytest.raises(ValueError, match="rates must lie in"):
        bad.select(np.arange(3), 1)


class ScriptedRollouts:
    """Group outcomes chosen per prompt id: id % 3 == 0 mixed, otherwise all right or all wrong."""

    def __init__(self, batch_size):
        self.next_id = 0
        self.batch_size = batch_size
        self.calls = 0

    def next_candidates(self):
        ids = np.arange(self.next_id, self.next_id + self.batch_size)
        self.next_id += self.batch_size
        return ids

    def rollout(self, ids):
        self.calls += 1
        successes = np.where(ids % 3 == 0, 4.0, np.where(ids % 3 == 1, 8.0, 0.0))
        return successes, np.full(len(ids), 8.0)


def test_dynamic_sampling_refills_and_counts_every_rollout():
    source = ScriptedRollouts(batch_size=6)
    ds = DynamicSampling(max_num_gen_batches=10)
    batch = ds.fill_batch(source.next_candidates, 5, source.rollout)
    assert batch.reached_k and len(batch.kept) == 5
    assert len(batch.rounds) == 3  # 2 informative prompts per batch of 6
    assert batch.rollouts == 3 * 6 * 8
    assert batch.kept_ids.tolist() == [0, 3, 6, 9, 12]
    assert ds.rollouts_generated == batch.rollouts


def test_dynamic_sampling_at_the_cap_returns_what_it_found_without_duplicates():
    source = ScriptedRollouts(batch_size=6)
    ds = DynamicSampling(max_num_gen_batches=2)
    batch = ds.fill_batch(source.next_candidates, 10, source.rollout)
    assert not batch.reached_k
    assert batch.kept_ids.tolist() == [0, 3, 6, 9]
    assert len(set(batch.kept_ids)) == len(batch.kept_ids)
    assert source.calls == 2 and batch.rollouts == 2 * 6 * 8


def test_dynamic_sampling_rejects_bad_rollouts():
    ds = DynamicSampling()
    with pytest.raises(ValueError, match=r"successes\[0\]"):
        ds.fill_batch(lambda: np.arange(3), 2, lambda ids: (np.array([9.0, 1, 1]), np.full(3, 8.0)))
    with pytest.raises(ValueError, match="next_candidates"):
        ds.fill_batch(lambda: np.array([1, 1]), 2, lambda ids: (np.ones(2), np.ones(2)))


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


def test_dynamic_sampling_keeps_a_prompt_repeated_by_the_stream_once():
    batches = iter([np.array([1, 2, 3]), np.array([3, 4, 5])])
    ds = DynamicSampling(max_num_gen_batches=2)
    batch = ds.fill_batch(lambda: next(batches), 3, lambda ids: (np.full(len(ids), 4.0), np.full(len(ids), 8.0)))
    np.testing.assert_array_equal(batch.kept_ids, [1, 2, 3])
    assert batch.kept_ids.dtype == np.int64


def test_dynamic_sampling_leaves_counters_alone_when_the_rollout_raises():
    ds = DynamicSampling()

    def failing(ids):
        raise RuntimeError("rollout worker died")

    with pytest.raises(RuntimeError):
        ds.fill_batch(lambda: np.arange(3), 2, failing)
    assert ds.rollouts_generated == 0.0 and ds.step == 0
