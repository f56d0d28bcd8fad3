"""SelectionLoop: next -> observe with flat per-rollout records, metrics, verdicts, features, state."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mopps import MoPPS, SelectionLoop, SuccessRule, Uniform
from mopps.core.metrics import SELECTION_REPORT_KEYS


def rollouts_of(batch, rates, n=4, rng=None):
    """n rollouts per chosen prompt, binary rewards, returned shuffled (hosts reorder rows)."""
    rng = rng or np.random.default_rng(0)
    prompt_ids = np.repeat(np.asarray(batch.ids), n)
    rewards = (rng.random(len(prompt_ids)) < rates[batch.positions].repeat(n)).astype(float)
    order = rng.permutation(len(prompt_ids))
    return prompt_ids[order], rewards[order]


def make_loop(selector=None, n_prompts=40, **kwargs):
    ids = np.arange(n_prompts) * 10 + 3  # ids are not row positions
    return SelectionLoop(selector if selector is not None else MoPPS(seed=1), ids, rule=SuccessRule("threshold", 1.0), **kwargs)


def test_next_offers_ts_ratio_times_k_candidates_and_records_the_prediction_of_each_chosen_prompt():
    loop = make_loop(ts_ratio=4, seed=2)
    batch = loop.next(5)
    assert batch.step == 1 and len(batch) == 5 and len(batch.candidates) == 20
    np.testing.assert_array_equal(batch.ids, loop.prompt_ids[batch.positions])
    np.testing.assert_array_equal(batch.positions, batch.candidates[batch.selection.index])
    np.testing.assert_array_equal(batch.predicted_rate, batch.selection.predicted_rate[batch.selection.index])
    assert batch.metrics() == {"mopps/candidates": 20.0, "mopps/selected": 5.0}
    assert len(make_loop(ts_ratio=100).next(5).candidates) == 40  # capped at the dataset


def test_observe_updates_the_selector_like_the_aggregated_evidence_and_reports_shared_names():
    loop = make_loop(ts_ratio=2)
    twin = MoPPS(seed=1)
    rates = np.linspace(0, 1, 40)
    batch = loop.next(6)
    twin.select(loop.ids_at(batch.candidates), 6)  # same draws, same generator position
    prompt_ids, rewards = rollouts_of(batch, rates)
    metrics = loop.observe(prompt_ids, rewards)
    successes = np.array([rewards[prompt_ids == i].sum() for i in batch.ids])
    twin.update(batch.ids, successes, np.full(6, 4.0))
    np.testing.assert_array_equal(loop.selector.posterior(batch.ids)[0], twin.posterior(batch.ids)[0])
    assert {f"mopps/{name}" for name in SELECTION_REPORT_KEYS} <= set(metrics)
    assert metrics["mopps/lag"] == 0.0 and metrics["mopps/observed_groups"] == 6.0
    assert metrics["mopps/rollouts"] == 24.0 and metrics["mopps/open_predictions"] == 0.0
    assert loop.rollouts == 24


def test_late_evidence_of_several_steps_in_one_call_settles_each_and_reports_lag():
    loop = make_loop(ts_ratio=1)
    rates = np.full(40, 0.5)
    first, second, third = loop.next(4), loop.next(4), loop.next(4)
    records = [rollouts_of(batch, rates) for batch in (first, second)]
    metrics = loop.observe(np.concatenate([r[0] for r in records]), np.concatenate([r[1] for r in records]))
    assert metrics["mopps/observed_groups"] == 8.0 and metrics["mopps/open_predictions"] == 4.0
    assert metrics["mopps/lag"] == 1.5  # chosen at steps 1 and 2, observed after step 3
    stray = loop.observe(np.asarray(first.ids[:1]), [1.0])  # first's prediction is already settled
    assert stray["mopps/unpredicted_groups"] == 1.0 and "mopps/spearman" not in stray
    assert loop.observe(*rollouts_of(third, rates))["mopps/lag"] == 0.0


def test_rollouts_without_a_verdict_are_dropped_and_a_prompt_without_any_teaches_nothing():
    loop = make_loop(ts_ratio=1)
    batch = loop.next(2)
    a, b = batch.ids
    before = loop.selector.posterior([b])
    metrics = loop.observe([a, a, a, b, b], [1.0, np.nan, 0.0, np.nan, np.nan],
                           has_verdict=np.array([True, False, True, False, False]))
    assert loop.selector.posterior([a])[0][0] == 2.0 and loop.selector.posterior([a])[1][0] == 2.0  # 1 of 2 trials
    assert loop.selector.posterior([b]) == before  # prior: no verdict, no evidence
    assert metrics["mopps/observed_groups"] == 1.0 and metrics["mopps/rollouts"] == 2.0
    assert metrics["mopps/rollouts_without_verdict"] == 3.0 and metrics["mopps/open_predictions"] == 0.0


@pytest.mark.parametrize("call, named", [
    (lambda loop, ids: loop.observe(ids, [1.0, np.nan]), "rewards[1]"),
    (lambda loop, ids: loop.observe([ids[0], 999], [1.0, 1.0]), "prompt_ids[1] = 999"),
    (lambda loop, ids: loop.observe(ids, [1.0]), "len(prompt_ids)"),
    (lambda loop, ids: loop.observe(ids, [1.0, 1.0], has_verdict=[1, 0.7]), "has_verdict[1] = 0.7"),
    (lambda loop, ids: loop.observe(ids, [1.0, 1.0], has_verdict=[np.nan, 1]), "has_verdict[0] = nan"),
    (lambda loop, ids: loop.observe(ids, [1.0, 1.0], has_verdict=[True]), "has_verdict"),
    (lambda loop, ids: loop.observe(["a", "b"], [1.0, 1.0]), "str ids"),
    (lambda loop, ids: loop.observe([ids[0], -1], [1.0, 1.0]), "prompt_ids[1]"),
    (lambda loop, ids: loop.next(0), "k"),
    (lambda loop, ids: loop.next(41), "k = 41"),
])
def test_bad_input_is_refused_and_nothing_changes(call, named):
    loop = make_loop(ts_ratio=2)
    batch = loop.next(2)
    before = loop.state_dict()
    with pytest.raises(ValueError, match=re.escape(named)):
        call(loop, list(batch.ids))
    assert_same(loop.state_dict(), before)


def test_a_failing_selector_does_not_advance_the_stream():
    from mopps import Oracle

    broken = {"on": True}

    def rates(ids):
        if broken["on"]:
            raise RuntimeError("rate service down")
        return np.full(len(ids), 0.5)

    loop = make_loop(Oracle(rates), ts_ratio=2)
    before = loop.state_dict()
    with pytest.raises(RuntimeError):
        loop.next(3)
    assert_same(loop.state_dict(), before)
    broken["on"] = False
    assert loop.next(3).candidates.tolist() == make_loop(ts_ratio=2).next(3).candidates.tolist()


def test_candidates_and_selector_draw_from_independent_streams():
    mopps_loop, uniform_loop = make_loop(MoPPS(seed=0), ts_ratio=3, seed=5), make_loop(Uniform(seed=0), ts_ratio=3, seed=5)
    for _ in range(4):
        np.testing.assert_array_equal(mopps_loop.next(4).candidates, uniform_loop.next(4).candidates)
    generator = np.random.default_rng(5)  # what a shared generator would have given
    assert make_loop(seed=5).next(4).candidates.tolist() != generator.permutation(40)[:4].tolist()


@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_a_loop_saved_with_open_predictions_continues_exactly(tmp_path, id_kind):
    ids = np.arange(30) * 7 if id_kind == "int" else [f"p/{i}" for i in range(30)]
    rates = np.linspace(0.0, 1.0, 30)

    def run(loop, steps, rng):
        out = []
        for _ in range(steps):
            batch = loop.next(3)
            out.append((np.asarray(batch.positions).tolist(), loop.observe(*rollouts_of(batch, rates, rng=rng))))
        return out

    def fresh():
        return SelectionLoop(MoPPS(seed=4, discount=0.5), ids, ts_ratio=3, seed=8)

    reference = run(fresh(), 8, np.random.default_rng(0))
    stopped, rng = fresh(), np.random.default_rng(0)
    before = run(stopped, 4, rng)
    stopped.save(tmp_path / "loop.npz")
    resumed = fresh()
    resumed.load(tmp_path / "loop.npz")
    assert_same(resumed.state_dict(), stopped.state_dict())
    after = run(resumed, 4, rng)
    assert [b[0] for b in before + after] == [r[0] for r in reference]
    assert_same([b[1] for b in before + after], [r[1] for r in reference])


@pytest.mark.parametrize("change, named", [
    (lambda s: {**s, "config": {**s["config"], "seed": 9}}, "seed"),
    (lambda s: {**s, "config": {**s["config"], "prompt_ids_sha1": "0" * 40}}, "prompt_ids_sha1"),
    (lambda s: {**s, "stream": {**s["stream"], "offset": -1}}, "offset"),
    (lambda s: {**s, "ledger": {**s["ledger"], "step": np.array([9, 9])}}, "ledger"),
    (lambda s: {**s, "selector": {**s["selector"], "step": -1}}, "step"),
    (lambda s: {**s, "step": 1.5}, "step"),
    (lambda s: {**s, "version": 2}, "version"),
])
def test_a_damaged_or_foreign_state_is_refused_and_the_loop_is_unchanged(change, named):
    source = make_loop(ts_ratio=2)
    source.observe(*rollouts_of(source.next(2), np.full(40, 0.5)))
    source.next(2)  # two open predictions
    target = make_loop(ts_ratio=2)
    target.next(3)
    before = target.state_dict()
    with pytest.raises(ValueError, match=named):
        target.load_state_dict(change(source.state_dict()))
    assert_same(target.state_dict(), before)


class TakesFeatures(MoPPS):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.registered = []

    def add_features(self, ids, features):
        self.registered.append((list(ids), np.asarray(features).tolist()))


def test_features_reach_a_selector_that_takes_them_and_are_ignored_otherwise():
    loop = make_loop(TakesFeatures(seed=0))
    assert loop.add_features([3, 13], np.ones((2, 2))) is True
    assert loop.selector.registered == [([3, 13], [[1.0, 1.0], [1.0, 1.0]])]
    assert make_loop().add_features([3], np.ones((1, 2))) is False
    with pytest.raises(ValueError, match=r"ids\[1\] = 4"):
        loop.add_features([3, 4], np.ones((2, 2)))


def test_constructor_refuses_bad_settings():
    for kwargs, named in (({"ts_ratio": 0.5}, "ts_ratio"), ({"seed": -1}, "seed"), ({"learn": 1}, "learn")):
        with pytest.raises(ValueError, match=named):
            make_loop(**kwargs)
    with pytest.raises(ValueError, match=r"prompt_ids\[2\]"):
        SelectionLoop(MoPPS(), [1, 2, 1])
    with pytest.raises(ValueError, match="selector"):
        SelectionLoop(object(), [1, 2])


def test_learn_false_logs_predictions_but_keeps_the_posterior():
    loop = make_loop(ts_ratio=1, learn=False)
    batch = loop.next(3)
    metrics = loop.observe(*rollouts_of(batch, np.ones(40)))
    assert len(loop.selector) == 0 and metrics["mopps/predicted_mean"] == 0.5


def assert_same(left, right):
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same(left[key], right[key])
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            assert_same(a, b)
    elif isinstance(left, np.ndarray):
        np.testing.assert_array_equal(left, right)
    elif isinstance(left, float) and np.isnan(left):
        assert np.isnan(right)
    else:
        assert left == right


def test_has_verdict_reads_as_compute_score_reports_it_and_empty_calls_are_fine():
    # compute_score's has_verdict is 1.0 / 0.0; the loop reads it as aggregate_rollouts and verl do.
    loop = make_loop(ts_ratio=1)
    a, b = loop.next(2).ids
    metrics = loop.observe([a, b], [1.0, np.nan], has_verdict=[1.0, 0.0])
    assert metrics["mopps/rollouts"] == 1.0 and metrics["mopps/rollouts_without_verdict"] == 1.0
    assert metrics["mopps/open_predictions"] == 0.0  # b had no verdict but its prediction is closed
    assert loop.observe([], [], has_verdict=[])["mopps/observed_groups"] == 0.0


def test_string_ids_differing_by_a_trailing_nul_are_two_prompts():
    # numpy's text type drops trailing NULs, which merged "a" and "a\0".
    loop = SelectionLoop(MoPPS(), ["a", "a\0"])
    assert loop.observe(["a", "a\0"], [1.0, 0.0])["mopps/observed_groups"] == 2.0


@pytest.mark.parametrize("ts_ratio", ["2", None, True, 0.5, float("nan"), float("inf")])
def test_ts_ratio_must_be_a_finite_number_of_at_least_one(ts_ratio):
    with pytest.raises(ValueError, match="ts_ratio"):
        SelectionLoop(MoPPS(), np.arange(4), ts_ratio=ts_ratio)


def test_ts_ratio_may_be_fractional():
    assert SelectionLoop(MoPPS(), np.arange(10), ts_ratio=2.5).next(2).candidates.size == 5


# -- time: one tick per policy update ------------------------------------------------------------------

def test_clock_observe_ticks_once_per_observe_that_taught_and_host_ticks_only_when_told():
    rates = np.linspace(0.0, 1.0, 40)
    loop = make_loop()
    for step in range(3):
        batch = loop.next(4)
        loop.observe(*rollouts_of(batch, rates))
        assert loop.tick == loop.selector.tick == step + 1
    loop.observe([], [])  # taught nothing: no policy update is assumed
    assert loop.tick == 3
    with pytest.raises(ValueError, match="clock"):
        loop.policy_updated()  # a second clock would count every update twice

    host = make_loop(clock="host")
    for _ in range(3):
        host.observe(*rollouts_of(host.next(4), rates))
    assert host.tick == 0
    host.policy_updated()
    host.policy_updated(ticks=4)
    assert host.tick == 5
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="ticks"):
            host.policy_updated(bad)
    assert host.tick == 5
    with pytest.raises(ValueError, match="clock"):
        make_loop(clock="sometimes")


def test_one_policy_update_block_ticks_once_and_learn_false_never_ticks():
    rates = np.linspace(0.0, 1.0, 40)
    loop = make_loop()
    with loop.one_policy_update():
        for _ in range(3):
            loop.observe(*rollouts_of(loop.next(4), rates))
        assert loop.tick == 0
    assert loop.tick == 1
    frozen = make_loop(learn=False)
    frozen.observe(*rollouts_of(frozen.next(4), rates))
    assert frozen.tick == 0
    frozen_host = make_loop(learn=False, clock="host")
    frozen_host.policy_updated()
    assert frozen_host.tick == 0


def test_the_tick_is_saved_and_a_loop_saved_before_the_clock_existed_still_loads(tmp_path):
    rates = np.linspace(0.0, 1.0, 40)
    loop = make_loop(clock="host")
    loop.observe(*rollouts_of(loop.next(4), rates))
    loop.policy_updated(3)
    loop.save(tmp_path / "loop.npz")
    resumed = make_loop(clock="host")
    resumed.load(tmp_path / "loop.npz")
    assert resumed.tick == 3
    with pytest.raises(ValueError, match="clock"):
        make_loop().load(tmp_path / "loop.npz")  # another clock would count time differently
    old = make_loop()
    old.observe(*rollouts_of(old.next(4), rates))
    state = old.state_dict()
    del state["config"]["clock"], state["selector"]["tick"]
    again = make_loop()
    again.load_state_dict(state)
    assert again.tick == again.selector.step == 1  # old states counted time in updates
