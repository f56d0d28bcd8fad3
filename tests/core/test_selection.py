import numpy as np

from mopps.core.selection import (
    informative_groups,
    largest_learnability,
    threshold_band,
    topk_toward_target,
    uniform_choice,
)


def test_topk_takes_the_closest_to_the_target_closest_first():
    scores = np.array([0.1, 0.55, 0.9, 0.48, 0.35, 0.75])
    np.testing.assert_array_equal(topk_toward_target(scores, 3, 0.5), [3, 1, 4])
    np.testing.assert_array_equal(topk_toward_target(scores, 2, 0.9), [2, 5])


def test_topk_breaks_ties_by_position():
    np.testing.assert_array_equal(topk_toward_target(np.full(6, 0.5), 3, 0.5), [0, 1, 2])
    # A tie across the cut in a large array: the earliest tied positions win.
    scores = np.full(4096, 0.5)
    scores[::5] = 0.6
    chosen = topk_toward_target(scores, 1076, 0.5)
    tied = np.flatnonzero(scores == 0.5)
    np.testing.assert_array_equal(chosen, tied[:1076])


def test_threshold_samples_inside_the_band_when_enough_are_inside():
    scores = np.array([0.31, 0.5, 0.69, 0.1, 0.95, 0.4])
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        chosen = threshold_band(scores, 2, (0.3, 0.7), rng)
        assert set(chosen.tolist()) <= {0, 1, 2, 5}
        seen.update(chosen.tolist())
    assert seen == {0, 1, 2, 5}


def test_threshold_falls_back_to_distance_outside_the_band():
    scores = np.array([0.05, 0.5, 0.2, 0.99, 0.75])
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    chosen = threshold_band(scores, 3, (0.3, 0.7), rng)
    np.testing.assert_array_equal(chosen, [1, 4, 2])
    assert rng.bit_generator.state == state  # no randomness used in the fallback


def test_uniform_choice_is_uniform():
    rng = np.random.default_rng(0)
    counts = np.zeros(10)
    for _ in range(4000):
        index, noise = uniform_choice(10, 3, rng)
        assert len(set(index.tolist())) == 3 and noise.shape == (10,)
        counts[index] += 1
    np.testing.assert_allclose(counts / counts.sum(), 0.1, atol=0.01)


def test_learnability_prefers_p_near_one_half():
    scores = np.array([0.0, 0.2, 0.5, 0.6, 1.0])
    np.testing.assert_array_equal(largest_learnability(scores, 2), [2, 3])
    np.testing.assert_array_equal(largest_learnability(scores, 2), topk_toward_target(scores, 2, 0.5))


def test_informative_groups_filter_on_binary_success():
    successes = np.array([0.0, 3.0, 8.0, 1.0])
    trials = np.array([8.0, 8.0, 8.0, 1.0])
    np.testing.assert_array_equal(informative_groups(successes, trials), [False, True, False, False])
