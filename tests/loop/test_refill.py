"""Refill: dynamic sampling over the loop, with any selector choosing each generation batch."""

from __future__ import annotations

import numpy as np
import pytest

from mopps import MoPPS, Refill, SelectionLoop, Uniform


def scripted(batch, n=8):
    """Per prompt id: id % 3 == 0 mixed (4 of 8), 1 all right, 2 all wrong."""
    ids = np.repeat(np.asarray(batch.ids), n)
    within = np.tile(np.arange(n), len(batch))
    rewards = np.where(ids % 3 == 0, within < n // 2, ids % 3 == 1).astype(float)
    return ids, rewards


def failing(batch):
    """A rollout whose worker died."""
    raise RuntimeError("rollout worker died")


def test_refill_keeps_mixed_groups_refills_and_counts_every_rollout():
    loop = SelectionLoop(Uniform(seed=0), np.arange(60), seed=1)
    result = Refill(loop, max_num_gen_batches=10).fill(5, scripted, batch_size=6)
    assert result.reached_k and len(result.kept) == 5
    kept = result.kept_positions
    assert (kept % 3 == 0).all() and len(set(kept.tolist())) == 5
    assert result.rollouts == len(result.rounds) * 6 * 8
    assert loop.rollouts == result.rollouts  # every rollout reached the selector, discarded groups too
    assert len(loop.selector) == 6 * len(result.rounds)
    assert result.metrics()["mopps/generation_batches"] == len(result.rounds)
    for round_ in result.rounds:
        assert (round_.successes[round_.keep] == 4).all() and round_.trials.tolist() == [8.0] * 6


def test_at_the_cap_it_returns_what_it_found_without_duplicates():
    loop = SelectionLoop(Uniform(seed=0), np.arange(60), seed=1)
    result = Refill(loop, max_num_gen_batches=2).fill(10, scripted, batch_size=6)
    assert not result.reached_k and len(result.rounds) == 2
    assert len(set(result.kept_positions.tolist())) == len(result.kept) <= 10
    assert result.rollouts == 2 * 6 * 8


def test_a_prompt_seen_again_in_a_later_round_is_kept_once():
    loop = SelectionLoop(Uniform(seed=0), [0, 3, 6], seed=0)  # every prompt is mixed; epochs repeat them
    result = Refill(loop, max_num_gen_batches=3).fill(4, scripted, batch_size=2)
    assert len(result.kept) == len(set(result.kept_positions.tolist())) == 3 and len(result.rounds) == 3


def test_a_selector_guides_the_candidates_of_each_refill():
    # MoPPS that learned which prompts are mixed picks them from 4x candidates: fewer refills than Uniform.
    ids = np.arange(300)
    counts = {}
    for name, selector in (("uniform", Uniform(seed=0)), ("mopps", MoPPS(seed=0))):
        loop = SelectionLoop(selector, ids, ts_ratio=1 if name == "uniform" else 4, seed=3)
        loop.selector.update(ids, np.where(ids % 3 == 0, 4.0, np.where(ids % 3 == 1, 8.0, 0.0)), np.full(300, 8.0))
        counts[name] = sum(len(Refill(loop, 10).fill(8, scripted).rounds) for _ in range(5))
    assert counts["mopps"] == 5 < counts["uniform"]


def test_the_rollout_error_propagates_and_bad_rollouts_are_refused():
    loop = SelectionLoop(Uniform(seed=0), np.arange(10), seed=0)

    with pytest.raises(RuntimeError):
        Refill(loop).fill(2, failing)
    with pytest.raises(ValueError, match=r"rewards\[0\]"):
        Refill(loop).fill(2, lambda batch: (batch.ids, [np.nan, 1.0]))
    with pytest.raises(ValueError, match="max_num_gen_batches"):
        Refill(loop, max_num_gen_batches=0)
    assert loop.rollouts == 0


def test_rollouts_without_a_verdict_are_counted_but_teach_nothing():
    loop = SelectionLoop(Uniform(seed=0), np.arange(10), seed=0)

    def timeouts(batch):
        ids = np.repeat(np.asarray(batch.ids), 2)
        return ids, np.full(len(ids), np.nan), np.zeros(len(ids), dtype=bool)

    result = Refill(loop, max_num_gen_batches=2).fill(2, timeouts)
    assert result.rollouts == 2 * 2 * 2 and not result.kept and loop.rollouts == 0


@pytest.mark.parametrize("bad_return, named", [
    (lambda batch: (batch.ids, np.array([0.5, 1.0]), np.array([0.5, 1.0])), "has_verdict[0] = 0.5"),
    (lambda batch: (batch.ids,), "a tuple of 1"),
    (lambda batch: None, "returned NoneType"),
    (lambda batch: (batch.ids, [np.nan, 1.0]), "rewards[0]"),
])
def test_a_refused_rollout_return_is_named_and_leaves_the_loop_as_it_was(bad_return, named):
    loop = SelectionLoop(MoPPS(seed=3), np.arange(10), seed=0)
    Refill(loop).fill(2, scripted)  # a first, good call: later state must match an untouched twin
    twin = SelectionLoop(MoPPS(seed=3), np.arange(10), seed=0)
    twin.load_state_dict(loop.state_dict())
    with pytest.raises(ValueError, match="rollout\\(batch\\) returned") as error:
        Refill(loop).fill(2, bad_return)
    assert named in str(error.value)
    assert loop.step == twin.step and len(loop.ledger) == len(twin.ledger)
    assert (loop.stream.epoch, loop.stream.offset) == (twin.stream.epoch, twin.stream.offset)
    assert loop.next(3).ids.tolist() == twin.next(3).ids.tolist()  # same candidates, same draws


def test_a_rollout_that_raises_opens_no_prediction():
    loop = SelectionLoop(Uniform(seed=0), np.arange(10), seed=0)

    with pytest.raises(RuntimeError):
        Refill(loop).fill(2, failing)
    assert loop.step == 0 and len(loop.ledger) == 0 and loop.stream.offset == 0


def test_a_generation_batch_larger_than_the_dataset_names_batch_size():
    loop = SelectionLoop(Uniform(seed=0), np.arange(10), seed=0)
    with pytest.raises(ValueError, match=r"batch_size = 11 > 10"):
        Refill(loop).fill(2, scripted, batch_size=11)


def capped_result(k=10):
    """Two rounds of 6 prompts over ids 0..59 (Uniform): fewer than k = 10 mixed groups are kept."""
    loop = SelectionLoop(Uniform(seed=0), np.arange(60), seed=1)
    result = Refill(loop, max_num_gen_batches=2).fill(k, scripted, batch_size=6)
    assert 0 < len(result.kept) < k
    return result


def as_pairs(trained) -> list[tuple[int, int]]:
    return [tuple(pair) for pair in trained.groups.tolist()]


def test_trained_groups_fill_tops_up_with_groups_that_were_not_kept_latest_round_first():
    result = capped_result()
    trained = result.trained_groups(10, "fill")
    groups, kept = as_pairs(trained), len(result.kept)
    assert groups[:kept] == result.kept and len(groups) == len(set(groups)) == 10
    spare = groups[kept:]
    assert all(not result.rounds[r].keep[p] for r, p in spare)
    assert [r for r, _ in spare] == sorted((r for r, _ in spare), reverse=True)  # the latest round first
    assert trained.kept.tolist() == [True] * kept + [False] * (10 - kept)
    assert trained.informative.tolist() == [True] * kept + [False] * (10 - kept)  # scripted: spare are all-equal
    assert trained.positions.tolist() == [int(result.rounds[r].batch.positions[p]) for r, p in groups]
    assert trained.metrics() == {"mopps/trained_groups": 10.0, "mopps/trained_zero_variance_frac": (10 - kept) / 10}
    assert result.metrics()["mopps/kept_share"] == kept / 12


def test_trained_groups_repeat_cycles_the_kept_groups_and_raise_stops():
    result = capped_result()
    kept = result.kept
    repeated = result.trained_groups(10, "repeat")
    assert as_pairs(repeated) == [kept[index % len(kept)] for index in range(10)]
    assert repeated.kept.all() and repeated.informative.all()
    with pytest.raises(RuntimeError, match=f"kept {len(kept)} informative groups of the 10 wanted after 2 generation"):
        result.trained_groups(10, "raise")
    with pytest.raises(ValueError, match="at_cap = 'drop'"):
        result.trained_groups(10, "drop")
    with pytest.raises(ValueError, match="only 12 were rolled out"):
        result.trained_groups(13, "fill")


def test_trained_groups_repeat_without_kept_groups_fills_and_a_full_result_is_unchanged():
    loop = SelectionLoop(Uniform(seed=0), np.arange(1, 60, 3), seed=1)  # ids % 3 == 1: always all right
    empty = Refill(loop, max_num_gen_batches=2).fill(4, scripted, batch_size=4)
    assert empty.kept == [] and as_pairs(empty.trained_groups(4, "repeat")) == \
        as_pairs(empty.trained_groups(4, "fill")) == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert not empty.trained_groups(4, "repeat").kept.any()
    full = Refill(SelectionLoop(Uniform(seed=0), np.arange(0, 60, 3), seed=1), 2).fill(4, scripted)
    assert full.reached_k
    assert all(as_pairs(full.trained_groups(4, at_cap)) == full.kept for at_cap in ("fill", "repeat", "raise"))


def test_one_set_of_metrics_counts_every_round():
    loop = SelectionLoop(Uniform(seed=0), np.arange(60), seed=1)
    sizes = iter([2, 4, 6])  # rollouts per prompt differ by round; all right, so the cap is hit

    def uneven(batch):
        size = next(sizes)
        return np.repeat(np.asarray(batch.ids), size), np.ones(size * len(batch))

    result = Refill(loop, max_num_gen_batches=3).fill(4, uneven)
    metrics = result.metrics()
    assert len(result.rounds) == 3 and metrics["mopps/generation_batches"] == 3
    assert metrics["mopps/rollouts"] == np.mean([round_.metrics["mopps/rollouts"] for round_ in result.rounds])
    assert metrics["mopps/rollouts"] * 3 == metrics["mopps/generated_rollouts"] == 4 * (2 + 4 + 6)
    assert metrics["mopps/selected"] == 4 and metrics["mopps/candidates"] == 4
    assert metrics["mopps/cumulative_rollouts"] == result.rounds[-1].metrics["mopps/cumulative_rollouts"] == 48
    assert metrics["mopps/brier"] == np.mean([round_.metrics["mopps/brier"] for round_ in result.rounds])


def test_the_loop_counts_every_rollout_since_the_run_began():
    loop = SelectionLoop(Uniform(seed=0), np.arange(60), seed=1)
    refill = Refill(loop, max_num_gen_batches=3)
    first = refill.fill(2, scripted, batch_size=4)
    second = refill.fill(2, scripted, batch_size=4)
    assert second.rounds[-1].metrics["mopps/cumulative_rollouts"] == first.rollouts + second.rollouts


def test_a_fill_is_one_policy_update_however_many_rounds_it_rolls_out():
    loop = SelectionLoop(MoPPS(seed=0), np.arange(60), seed=1)
    first = Refill(loop, max_num_gen_batches=10).fill(5, scripted, batch_size=6)
    assert len(first.rounds) > 1 and loop.selector.step == len(first.rounds)
    assert loop.tick == 1
    Refill(loop, max_num_gen_batches=10).fill(5, scripted, batch_size=6)
    assert loop.tick == 2
    host = SelectionLoop(MoPPS(seed=0), np.arange(60), seed=1, clock="host")
    Refill(host, max_num_gen_batches=10).fill(5, scripted, batch_size=6)
    assert host.tick == 0  # the host tells the loop of its optimiser steps itself


def test_a_failing_round_still_ends_the_policy_update_of_the_rounds_before_it():
    loop = SelectionLoop(MoPPS(seed=0), np.arange(60), seed=1)
    calls = []

    def second_round_fails(batch):
        calls.append(batch)
        if len(calls) == 2:
            raise RuntimeError("rollout worker died")
        return np.repeat(np.asarray(batch.ids), 8), np.ones(8 * len(batch))  # all right: nothing kept

    with pytest.raises(RuntimeError):
        Refill(loop, max_num_gen_batches=5).fill(5, second_round_fails, batch_size=6)
    assert loop.selector.step == 1 and loop.tick == 1
