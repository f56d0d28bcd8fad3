"""Allocation: pilot, choose and commit within one step, under each published rule and ours.

The rollouts are scripted per prompt (the same prompt always gives the same sequence of outcomes),
so each rule's decisions can be checked against what its paper describes.
"""

from __future__ import annotations

import numpy as np
import pytest

from mopps import MoPPS, SelectionLoop, Uniform
from mopps.loop import Allocation, PilotCommit, PosteriorPilot, ReinforceAda, SpeedScreen

from test_atomic import differing

N = 8


class Script:
    """Outcomes per prompt id, served in order across rounds: ``pattern(id)`` is a 0/1 array (64,)."""

    def __init__(self, pattern):
        self.pattern, self.served, self.requests = pattern, {}, []

    def __call__(self, request):
        self.requests.append(request)
        rewards = []
        for prompt_id in np.asarray(request.ids).tolist():
            start = self.served.get(prompt_id, 0)
            rewards.append(self.pattern(prompt_id)[start:start + request.rollouts_per_prompt])
            self.served[prompt_id] = start + request.rollouts_per_prompt
        return np.concatenate(rewards).astype(float)


def by_residue(prompt_id):
    """id % 4: 0 alternating (mixed from the first two), 1 all right, 2 all wrong, 3 right only at the 4th."""
    kind = prompt_id % 4
    if kind == 0:
        return np.arange(64) % 2
    if kind == 3:
        return (np.arange(64) % 4 == 3).astype(int)
    return np.full(64, 1 if kind == 1 else 0)


def rolled(script):
    """Each round's rewards as the script served them, for ``AllocationResult.rewards_of``."""
    out, served = [], {}
    for request in script.requests:
        values = []
        for prompt_id in np.asarray(request.ids).tolist():
            start = served.get(prompt_id, 0)
            values.append(script.pattern(prompt_id)[start:start + request.rollouts_per_prompt])
            served[prompt_id] = start + request.rollouts_per_prompt
        out.append(np.concatenate(values).astype(float))
    return out


def test_pilot_commit_pilots_a_quarter_on_three_times_the_batch_and_trains_the_band():
    loop = SelectionLoop(Uniform(seed=0), np.arange(400), seed=0)
    script = Script(by_residue)
    result = Allocation(loop, PilotCommit(), N).step(8, script)
    pilot, commit = script.requests
    assert pilot.purpose == "pilot" and len(pilot) == 24 and pilot.rollouts_per_prompt == 2
    assert commit.purpose == "commit" and len(commit) == 8 and commit.rollouts_per_prompt == 6
    # Pilot p_hat = 0.5 only for id % 4 == 0 (1 of 2); 1 and 0 (ids 1, 2, 3 mod 4) lie outside [0.125, 0.75].
    inside = pilot.positions[pilot.positions % 4 == 0]
    assert set(result.positions.tolist()) <= set(pilot.positions.tolist())
    assert set(result.positions[: min(8, len(inside))].tolist()) <= set(inside.tolist())
    assert (result.group_sizes() == N).all()  # pilot rows are part of the group
    assert result.rollouts == 24 * 2 + 8 * 6 == loop.rollouts  # every rollout reached the selector
    values = result.rewards_of(rolled(script))
    for position, group in zip(result.positions.tolist(), values):
        assert group.tolist() == by_residue(position)[:N].tolist()
    assert result.metrics()["mopps/pilot_rollouts"] == 48
    assert result.metrics()["mopps/unused_rollouts"] == 48 - 8 * 2


def test_pilot_commit_fills_with_the_prompts_nearest_the_band_when_too_few_survive():
    loop = SelectionLoop(Uniform(seed=0), np.arange(1, 400, 4), seed=0)  # every prompt all right: p_hat = 1
    result = Allocation(loop, PilotCommit(), N).step(4, Script(by_residue))
    assert len(result.positions) == 4 and not result.informative.any()


def test_speed_screens_batches_until_k_intermediate_prompts_then_completes_them():
    loop = SelectionLoop(Uniform(seed=0), np.arange(400), seed=0)
    script = Script(by_residue)
    result = Allocation(loop, SpeedScreen(), N).step(8, script)
    screens = [request for request in script.requests if request.purpose == "screen"]
    assert all(len(request) == 8 and request.rollouts_per_prompt == 4 for request in screens)
    assert script.requests[-1].purpose == "commit" and script.requests[-1].rollouts_per_prompt == 4
    # Intermediate after 4 screening rollouts: id % 4 in (0, 3); never 1 or 2.
    assert (np.isin(result.positions % 4, (0, 3))).all() and result.informative.all()
    assert len(screens) >= 2  # half the prompts qualify per batch in expectation: more than one screen
    assert (result.group_sizes() == N).all() and result.rollouts == loop.rollouts


def test_speed_stops_at_the_cap_and_fills():
    loop = SelectionLoop(Uniform(seed=0), np.arange(2, 400, 4), seed=0)  # all wrong: nobody qualifies
    script = Script(by_residue)
    result = Allocation(loop, SpeedScreen(max_rounds=3), N).step(4, script)
    assert [request.purpose for request in script.requests] == ["screen"] * 3 + ["commit"]
    assert len(result.positions) == 4 and (result.group_sizes() == N).all()


def test_reinforce_ada_samples_rounds_until_balanced_and_downsamples_balanced():
    loop = SelectionLoop(Uniform(seed=0), np.arange(400), seed=0)
    script = Script(by_residue)
    result = Allocation(loop, ReinforceAda(), N).step(8, script)
    rounds = script.requests
    assert all(request.purpose == "round" and request.rollouts_per_prompt == N for request in rounds)
    assert len(rounds[0]) == 8
    # Alternating prompts have 4 of each after one round and leave; right-at-the-4th need 2 rounds
    # (2 successes per 8); all-right and all-wrong run all 4 rounds.
    expected_rounds = {0: 1, 3: 2, 1: 4, 2: 4}
    served = {int(position): sum(position in request.positions for request in rounds) for position in result.positions}
    assert all(served[position] == expected_rounds[position % 4] for position in served)
    values = result.rewards_of(rolled(script))
    for position, group in zip(result.positions.tolist(), values):
        assert len(group) == N
        if position % 4 in (0, 3):
            assert group.sum() == N // 2  # balanced: n/2 successes and n/2 failures
    assert result.rollouts == loop.rollouts == sum(len(request) * N for request in rounds)


def test_reinforce_ada_positive_exit_stops_at_the_first_success():
    loop = SelectionLoop(Uniform(seed=0), np.arange(3, 400, 4), seed=0)  # first success at the 4th rollout
    script = Script(by_residue)
    Allocation(loop, ReinforceAda(exit="positive"), N).step(4, script)
    assert len(script.requests) == 1


def believing(rates_by_id, ids, weight=40.0, discount=0.5):
    """MoPPS that has seen each id at its rate ``weight`` times (a confident, possibly stale belief)."""
    selector = MoPPS(discount=discount, seed=0)
    selector.update(ids, rates_by_id * weight, np.full(len(ids), weight))
    return selector


def test_posterior_pilot_spends_nothing_extra_where_the_posterior_is_unsure():
    # A flat prior: a pilot of 2 all-equal outcomes never makes the rest of a group more likely wasted
    # than a fresh prompt's group, so nobody is replaced and the step costs exactly k * n.
    loop = SelectionLoop(MoPPS(discount=0.5, seed=0), np.arange(400), ts_ratio=4, seed=0)
    script = Script(by_residue)
    result = Allocation(loop, PosteriorPilot(), N).step(8, script)
    assert [request.purpose for request in script.requests] == ["pilot", "commit"]
    assert result.rollouts == 8 * N and result.metrics()["mopps/unused_rollouts"] == 0
    assert (result.group_sizes() == N).all()


def test_posterior_pilot_replaces_a_prompt_whose_pilot_says_the_rest_is_wasted():
    # Prompts 0 mod 4 are believed mixed (rate 0.5, weight 40) and are; the rest are unseen (flat
    # prior). A Thompson draw takes some unseen prompts; those whose pilot of 4 comes out all equal
    # (ids 1 and 2 mod 4) now have a chance over 1/2 that the rest of their group is wasted, more than
    # a confident-mixed replacement's group costs per rollout: they are replaced; mixed pilots stay.
    ids = np.arange(400)
    believed = ids[ids % 4 == 0]
    selector = MoPPS(discount=0.5, seed=0)
    selector.update(believed, np.full(len(believed), 20.0), np.full(len(believed), 40.0))
    loop = SelectionLoop(selector, ids, ts_ratio=8, seed=0)
    script = Script(by_residue)
    result = Allocation(loop, PosteriorPilot(pilot_fraction=0.5), N).step(8, script)
    first = script.requests[0]
    assert first.purpose == "pilot" and len(first) == 8 and first.rollouts_per_prompt == 4
    wasted = first.positions[np.isin(first.positions % 4, (1, 2))]
    assert len(wasted) > 0 and not np.isin(wasted, result.positions).any()
    kept_mixed = first.positions[np.isin(first.positions % 4, (0, 3))]
    assert np.isin(kept_mixed, result.positions).all()
    assert script.requests[1].purpose == "pilot" and len(script.requests[1]) == len(wasted)
    assert len(result.positions) == 8 and (result.group_sizes() == N).all()
    assert result.metrics()["mopps/unused_rollouts"] >= 4 * len(wasted)
    assert result.rollouts == loop.rollouts
    # A replaced prompt's pilot stays evidence: its posterior moved toward what it showed.
    assert (loop.selector.predict(wasted[wasted % 4 == 1]) > 0.5).all()
    assert (loop.selector.predict(wasted[wasted % 4 == 2]) < 0.5).all()


def test_a_step_is_one_policy_tick_and_every_rollout_reaches_the_selector():
    for rule in (PilotCommit(), SpeedScreen(), ReinforceAda(), PosteriorPilot()):
        loop = SelectionLoop(MoPPS(discount=0.5, seed=0), np.arange(200), ts_ratio=2, seed=0)
        result = Allocation(loop, rule, N).step(6, Script(by_residue))
        assert loop.tick == 1, rule
        assert loop.rollouts == result.rollouts
        assert result.metrics()["mopps/allocated_rollouts"] == result.rollouts


@pytest.mark.parametrize("rule", [PilotCommit(), SpeedScreen(), ReinforceAda(), PosteriorPilot(pilot_fraction=0.5)])
def test_a_failed_round_undoes_the_whole_step(rule):
    loop = SelectionLoop(believing(np.full(100, 0.5), np.arange(100), weight=2.0), np.arange(100), ts_ratio=2, seed=0)
    Allocation(loop, rule, N).step(4, Script(by_residue))
    before = loop.state_dict()
    calls = []

    def dies_on_second_round(request):
        calls.append(request)
        if len(calls) == 2:
            raise RuntimeError("rollout worker died")
        return Script(by_residue)(request)

    with pytest.raises(RuntimeError, match="worker died"):
        Allocation(loop, rule, N).step(4, dies_on_second_round)
    assert len(calls) == 2  # the first round was rolled out and learned before the failure
    assert differing(before, loop.state_dict()) == []


def test_a_return_observe_refuses_names_rollout_request_and_changes_nothing():
    loop = SelectionLoop(Uniform(seed=0), np.arange(50), seed=0)
    before = loop.state_dict()
    with pytest.raises(ValueError, match=r"rollout\(request\) returned records observe\(\) refuses"):
        Allocation(loop, PilotCommit(), N).step(4, lambda request: np.zeros(3))
    with pytest.raises(ValueError, match="tuple of 3"):
        Allocation(loop, PilotCommit(), N).step(4, lambda request: (1, 2, 3))
    assert loop.state_dict()["step"] == before["step"] and loop.rollouts == 0


def test_resumed_loop_allocates_the_next_step_exactly_as_the_uninterrupted_one(tmp_path):
    def fresh():
        return SelectionLoop(MoPPS(discount=0.5, seed=3), np.arange(300), ts_ratio=4, seed=1)

    rule = PosteriorPilot(pilot_fraction=0.5)
    straight = fresh()
    for _ in range(2):
        Allocation(straight, rule, N).step(8, Script(by_residue))
    straight.save(tmp_path / "loop.npz")
    resumed = fresh()
    resumed.load(tmp_path / "loop.npz")
    expected = Allocation(straight, rule, N).step(8, Script(by_residue))
    again = Allocation(resumed, rule, N).step(8, Script(by_residue))
    np.testing.assert_array_equal(expected.positions, again.positions)
    assert [len(round_.request) for round_ in expected.rounds] == [len(round_.request) for round_ in again.rounds]
    assert differing(straight.state_dict(), resumed.state_dict()) == []


def test_string_ids_and_variable_verdicts():
    ids = [f"p{i}" for i in range(80)]
    loop = SelectionLoop(MoPPS(discount=0.5, seed=0), ids, ts_ratio=2, seed=0)

    def with_verdicts(request):
        count = len(request) * request.rollouts_per_prompt
        has_verdict = np.ones(count, dtype=bool)
        has_verdict[0] = False
        return np.where(has_verdict, np.arange(count) % 2, np.nan), has_verdict

    result = Allocation(loop, PilotCommit(), N).step(4, with_verdicts)
    assert result.rollouts == loop.rollouts + loop.rollouts_without_verdict
    assert all(isinstance(request_id, str) for request_id in loop.ids_at(result.positions))


def test_bad_settings_name_the_field():
    loop = SelectionLoop(Uniform(seed=0), np.arange(10), seed=0)
    with pytest.raises(ValueError, match="group_size"):
        Allocation(loop, PilotCommit(), 1)
    with pytest.raises(ValueError, match="rule"):
        Allocation(loop, object(), N)
    with pytest.raises(ValueError, match="k = 11"):
        Allocation(loop, PilotCommit(), N).step(11, Script(by_residue))
    with pytest.raises(ValueError, match="pilot_fraction"):
        PosteriorPilot(pilot_fraction=2.0)
    with pytest.raises(ValueError, match="exit"):
        ReinforceAda(exit="sometimes")
    with pytest.raises(ValueError, match="max_rounds"):
        SpeedScreen(max_rounds=0)


def test_choose_among_checks_positions_and_opens_predictions():
    loop = SelectionLoop(MoPPS(seed=0), np.arange(10), seed=0)
    batch = loop.choose_among(np.array([3, 5, 7]), 2)
    assert set(batch.positions.tolist()) <= {3, 5, 7} and batch.step == 1 and len(loop.ledger) == 2
    with pytest.raises(ValueError, match=r"positions\[1\] = 3 is repeated"):
        loop.choose_among(np.array([3, 3]), 1)
    with pytest.raises(ValueError, match=r"positions\[0\] = 10"):
        loop.choose_among(np.array([10]), 1)
    with pytest.raises(ValueError, match="k = 3 > 2"):
        loop.choose_among(np.array([1, 2]), 3)
    assert loop.step == 1


def test_speed_trains_a_prompt_on_the_screen_that_qualified_it_even_when_screened_again():
    # 6 prompts, k = 2: the stream offers every prompt again every 3 rounds. Prompt 1 is mixed on its
    # first screen only (then all wrong); the rest are always wrong, so the step screens 6 rounds, and
    # prompt 1 must train on the screen that qualified it, not on a later all-wrong one.
    def pattern(prompt_id):
        return np.array([1, 0] + [0] * 62) if prompt_id == 1 else np.zeros(64, dtype=int)

    loop = SelectionLoop(Uniform(seed=0), np.arange(6), seed=0)
    script = Script(pattern)
    result = Allocation(loop, SpeedScreen(screen_fraction=0.5, max_rounds=6), 4).step(2, script)
    screens = [request for request in script.requests if request.purpose == "screen"]
    assert len(screens) == 6 and sum(1 in request.positions.tolist() for request in screens) == 2
    assert result.positions[0] == 1 and result.informative.tolist() == [True, False]
    assert (result.group_sizes() == 4).all()
    first_screen = next(request.index for request in screens if 1 in request.positions.tolist())
    assert set(result.members[0][:, 0].tolist()) == {first_screen, script.requests[-1].index}


def test_reinforce_ada_keeps_groups_of_n_when_rollouts_lack_a_verdict():
    loop = SelectionLoop(Uniform(seed=0), np.arange(40), seed=0)

    def no_verdict_for_id_zero(request):
        count = len(request) * request.rollouts_per_prompt
        has_verdict = np.repeat(np.asarray(request.ids) != 0, request.rollouts_per_prompt)
        return np.where(has_verdict, np.arange(count) % 2, np.nan), has_verdict

    result = Allocation(loop, ReinforceAda(), N).step(40, no_verdict_for_id_zero)
    assert (result.group_sizes() == N).all()


def test_reinforce_ada_with_an_odd_group_exits_at_floor_half_of_each():
    loop = SelectionLoop(Uniform(seed=0), np.arange(100), seed=0)
    script = Script(lambda prompt_id: (np.arange(64) % 2 == 0).astype(int))  # 1, 0, 1, 0, 1, ...
    result = Allocation(loop, ReinforceAda(), 5).step(4, script)
    assert len(script.requests) == 1  # 3 successes and 2 failures: balanced at floor(5 / 2) = 2 each
    assert (result.group_sizes() == 5).all()


def test_a_list_of_rewards_and_verdicts_is_read_like_a_tuple():
    loop = SelectionLoop(Uniform(seed=0), np.arange(50), seed=0)

    def as_list(request):
        count = len(request) * request.rollouts_per_prompt
        return [(np.arange(count) % 2).astype(float), np.ones(count, dtype=bool)]

    result = Allocation(loop, PilotCommit(), N).step(4, as_list)
    assert result.rollouts == loop.rollouts and result.informative.all()
