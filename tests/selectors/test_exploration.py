"""The exploration floor (``explore``): a prompt the rule would never choose again is still revisited.

Without it a selector aiming at 0.5 never revisits a prompt it believes is at 0 or 1; a public
comparison (marin-community/marin#8765) lost a whole bin to a grader fault that way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mopps import ContextualMoPPS, HistoryFilter, MoPPS
from mopps.core.selection import exploration_slots, with_exploration

POOL, K = 100, 10


def test_the_explored_share_is_exact_in_expectation_and_spent_on_what_the_rule_left_out():
    rng = np.random.default_rng(0)
    slots = [exploration_slots(16, 0.05, rng) for _ in range(4000)]
    assert set(slots) == {0, 1} and np.mean(slots) == pytest.approx(0.8, abs=0.03)
    assert exploration_slots(10, 0.1, rng) == 1 and exploration_slots(4, 1.0, rng) == 4
    ranked = np.array([5, 2, 7], dtype=np.int64)
    index = with_exploration(ranked, 12, 2, rng)
    assert index[:3].tolist() == [5, 2, 7] and len(set(index.tolist())) == 5
    state = np.random.default_rng(3).bit_generator.state
    untouched = np.random.default_rng(3)
    assert exploration_slots(16, 0.0, untouched) == 0 and untouched.bit_generator.state == state


def test_explore_zero_keeps_every_choice_of_the_paper_selector():
    def choices(selector):
        rng = np.random.default_rng(1)
        out = []
        for _ in range(20):
            choice = selector.select(np.arange(POOL), K)
            selector.update(choice.ids, rng.binomial(8, 0.5, K).astype(float), np.full(K, 8.0))
            selector.policy_updated()
            out.append(choice.ids.tolist())
        return out

    assert choices(MoPPS(seed=2)) == choices(MoPPS(explore=0.0, seed=2))
    assert MoPPS()._config() == MoPPS(explore=0.0)._config()  # a default selector's saved config is unchanged


@pytest.mark.parametrize("explore, bad", [(-0.1, "explore"), (1.5, "explore"), ("x", "explore")])
def test_bad_explore_is_refused(explore, bad):
    for make in (MoPPS, ContextualMoPPS, HistoryFilter):
        with pytest.raises(ValueError, match=bad):
            make(explore=explore)
    with pytest.raises(ValueError, match="explore"):
        MoPPS(strategy="uniform", explore=0.1)


def _dead_then_alive(selector, alive_from: int, steps: int, rng) -> np.ndarray:
    """Prompts 0-9 succeed never until step ``alive_from``, then half the time; the other 90 have rates
    spread over [0.1, 0.9]. Every prompt is a candidate every step. Returns the first step >= alive_from
    at which each of prompts 0-9 was chosen (-1: never)."""
    rates = np.r_[np.zeros(10), np.linspace(0.1, 0.9, POOL - 10)]
    # The selector has seen the dead prompts fail often (all 8 rollouts wrong, 30 times each).
    for _ in range(30):
        selector.update(np.arange(10), np.zeros(10), np.full(10, 8.0))
    first = np.full(10, -1)
    for step in range(steps):
        if step == alive_from:
            rates[:10] = 0.5
        choice = selector.select(np.arange(POOL), K)
        ids = np.asarray(choice.ids)
        selector.update(ids, rng.binomial(8, rates[ids]).astype(float), np.full(K, 8.0))
        selector.policy_updated()
        if step >= alive_from:
            revisited = ids[(ids < 10)]
            first[revisited] = np.where(first[revisited] < 0, step, first[revisited])
    return first


def test_prompts_whose_rate_jumps_from_0_to_half_are_chosen_again_within_the_floors_bound():
    # explore = 0.1 of K = 10 is e = 1 slot a batch, drawn uniformly among the n - K + e = 91 candidates
    # the rule left out: a prompt the rule never takes is chosen with probability p = 1/91 each step,
    # so it waits more than T steps with probability (1 - p)^T <= exp(-p T). For all 10 prompts with
    # probability >= 1 - delta (union bound): T = ceil(ln(10 / delta) / p); delta = 1e-3 gives T = 839.
    p = 1 / (POOL - K + 1)
    bound = math.ceil(math.log(10 / 1e-3) / p)
    alive_from = 50
    first = _dead_then_alive(MoPPS(explore=0.1, seed=0), alive_from, alive_from + bound, np.random.default_rng(0))
    assert (first >= alive_from).all(), "every revived prompt is chosen again within the bound"
    # Without the floor the rule never revisits them (the property the floor exists for).
    never = _dead_then_alive(MoPPS(seed=0), alive_from, alive_from + bound, np.random.default_rng(0))
    assert (never < 0).all()


def _broken_grader(selector, features: bool, fixed_at: int = 100, steps: int = 500, seed: int = 0):
    """A bin (prompts 0-9, true rate 0.5) is graded 0 until ``fixed_at`` (and was graded 0 in an
    earlier pass over the pool); the other 90 prompts have rates uniform in [0, 1]. Returns the bin's
    share of the chosen prompts over the last 100 steps, and its mean predicted rate at the end."""
    rng = np.random.default_rng(seed)
    rates = np.r_[np.full(10, 0.5), rng.uniform(0.0, 1.0, POOL - 10)]
    if features:
        in_bin = (np.arange(POOL) < 10).astype(float)
        selector.add_features(np.arange(POOL), np.c_[in_bin, rng.standard_normal((POOL, 3))])
    for _ in range(3):  # the earlier pass, already under the broken grader
        selector.update(np.arange(10), np.zeros(10), np.full(10, 8.0))
        selector.policy_updated()
    last = []
    for step in range(steps):
        choice = selector.select(np.arange(POOL), K)
        ids = np.asarray(choice.ids)
        graded = np.where((ids < 10) & (step < fixed_at), 0.0, rates[ids])
        selector.update(ids, rng.binomial(8, graded).astype(float), np.full(K, 8.0))
        selector.policy_updated()
        if step >= steps - 100:
            last.append(ids)
    return float(np.mean(np.concatenate(last) < 10)), float(selector.predict(np.arange(10)).mean())


@pytest.mark.parametrize("make, features", [
    (lambda explore: MoPPS(discount=0.5, explore=explore, seed=0), False),
    (lambda explore: ContextualMoPPS(explore=explore, seed=0), True),
], ids=["mopps_0.5", "contextual_bin_feature"])
def test_a_bin_graded_0_by_a_broken_grader_is_recovered_after_the_fix(make, features):
    share, predicted = _broken_grader(make(0.05), features)
    # The bin is 10% of the pool and sits at the target: recovered, it is chosen at least that often.
    assert share >= 0.1 and 0.3 <= predicted <= 0.7, (share, predicted)
    control_share, control_predicted = _broken_grader(make(0.0), features)
    assert control_share < share


def test_history_filter_with_a_floor_still_takes_prompts_it_always_skips():
    def hard_prompts_chosen(explore):
        # Skip probabilities pinned at 1: a prompt whose last group was all wrong is never kept while
        # enough others are, unless the floor takes it.
        selector = HistoryFilter(initial_skip=1.0, min_skip=1.0, explore=explore, seed=0)
        selector.update(np.arange(20), np.zeros(20), np.full(20, 8.0))
        chosen = 0
        for _ in range(50):
            choice = selector.select(np.arange(POOL), K)
            chosen += int(np.sum(np.asarray(choice.ids) < 20))
        return chosen

    assert hard_prompts_chosen(0.0) == 0
    # 2 of 10 slots a batch over the 92 candidates left out, 20 of them hard: about 22 in 50 batches.
    assert hard_prompts_chosen(0.2) > 5
