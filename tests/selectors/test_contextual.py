"""ContextualMoPPS: features at the boundary, what the shared model learns, and its state."""

import copy

import numpy as np
import pytest

from mopps import ContextualMoPPS, MoPPS
from mopps.core.contextual import ContextualModel
from mopps.core.metrics import spearman


def _world(seed=0, pool=3000, dim=6):
    """A logistic world: rate = sigmoid(ability + w . x + own), features x informative."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((pool, dim))
    weights = rng.standard_normal(dim) * 1.5 / np.sqrt(dim)
    own = rng.standard_normal(pool) * 0.5
    return rng, features, weights, own


def _drive(selector, rng, logits_of, steps, pool, candidates=128, k=16, n=8, on_step=None):
    for step in range(steps):
        ids = rng.choice(pool, candidates, replace=False)
        choice = selector.select(ids, k)
        rates = 1.0 / (1.0 + np.exp(-logits_of(step)[choice.ids]))
        selector.update(choice.ids, rng.binomial(n, rates).astype(float), np.full(k, float(n)))
        selector.policy_updated()
        if on_step is not None:
            on_step(choice)


def _same_state(left, right):
    assert type(left) is type(right), (left, right)
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            _same_state(left[key], right[key])
    elif isinstance(left, np.ndarray):
        assert left.dtype == right.dtype
        np.testing.assert_array_equal(left, right)
    else:
        assert left == right


# -- add_features at the boundary -----------------------------------------------------------------

@pytest.mark.parametrize("features, message", [
    (np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 2.0]]), r"features\[0, 1\] = nan"),
    (np.array([[1.0, 2.0], [0.0, np.inf], [1.0, 2.0]]), r"features\[1, 1\] = inf"),
    (np.zeros((3, 3)), "features has 3 columns"),
    (np.zeros((2, 2)), r"len\(ids\) = 3, len\(features\) = 2"),
    (np.zeros(3), "two-dimensional"),
    ([["a", "b"]] * 3, "features must be numbers"),
])
def test_add_features_refuses_bad_input_and_keeps_state(features, message):
    selector = ContextualMoPPS(seed=0)
    selector.add_features(np.arange(10), np.random.default_rng(0).standard_normal((10, 2)))
    selector.update([1, 2], [3.0, 4.0], [8.0, 8.0])
    before = selector.state_dict()
    with pytest.raises(ValueError, match=message):
        selector.add_features(np.array([20, 21, 22]), features)
    _same_state(before, selector.state_dict())


def test_add_features_refuses_duplicates_changes_and_other_id_kinds():
    selector = ContextualMoPPS(seed=0)
    rows = np.random.default_rng(1).standard_normal((5, 3))
    selector.add_features([0, 1, 2, 3, 4], rows)
    before = selector.state_dict()
    with pytest.raises(ValueError, match=r"ids\[2\] = 7 occurs earlier"):
        selector.add_features([7, 8, 7], rows[:3])
    changed = rows[:2].copy()
    changed[1, 0] += 1.0
    with pytest.raises(ValueError, match=r"ids\[1\] = 1 already has different features"):
        selector.add_features([0, 1], changed)
    with pytest.raises(ValueError, match="holds str ids"):
        selector.add_features(["a", "b"], rows[:2])
    with pytest.raises(ValueError, match="0 columns"):
        ContextualMoPPS().add_features([0], np.zeros((1, 0)))
    _same_state(before, selector.state_dict())
    selector.add_features([3, 4], rows[3:])  # the same rows again: a resumed host may repeat the call
    _same_state(before, selector.state_dict())


def test_features_are_stored_as_float32_and_projected_when_wide():
    rng = np.random.default_rng(2)
    selector = ContextualMoPPS(feature_dim=8, projection_seed=3)
    selector.add_features(np.arange(400), rng.standard_normal((400, 50)))
    state = selector.state_dict()["arrays"]
    assert state["features"].dtype == np.float32 and state["features"].shape == (400, 8)
    np.testing.assert_allclose(state["features"].std(axis=0), 1.0, atol=1e-4)
    narrow = ContextualMoPPS(feature_dim=8)
    narrow.add_features(np.arange(400), rng.standard_normal((400, 5)))
    assert narrow.state_dict()["arrays"]["features"].shape == (400, 5)


def test_features_arriving_after_evidence_keep_what_was_learned():
    rng, features, weights, own = _world(pool=400)
    selector = ContextualMoPPS(seed=0)
    _drive(selector, rng, lambda step: 1.0 + own, 10, pool=400)
    ability = selector.state.theta_mean[0]
    selector.add_features(np.arange(400), features)
    assert selector.state.theta_mean[0] == ability
    assert selector.state.theta_mean.shape == (2 + 1 + 6,)
    # Observed prompts keep their entries and gain features; the rest are new entries.
    assert len(selector) == 400


# -- what the model learns ------------------------------------------------------------------------

def test_features_predict_unseen_prompts_where_mopps_cannot():
    rng, features, weights, own = _world()
    logits = features @ weights + own
    contextual = ContextualMoPPS(seed=0)
    contextual.add_features(np.arange(3000), features)
    mopps = MoPPS(seed=0)
    observed = []
    for selector in (contextual, mopps):
        _drive(selector, np.random.default_rng(5), lambda step: logits, 40, pool=3000,
               on_step=lambda choice: observed.extend(choice.ids.tolist()))
    unseen = np.setdiff1d(np.arange(3000), observed)[:500]
    assert len(unseen) == 500
    truth = 1 / (1 + np.exp(-logits[unseen]))
    assert spearman(contextual.predict(unseen), truth) > 0.7
    assert np.ptp(mopps.predict(unseen)) == 0.0  # MoPPS's prior: the same rate for every unseen prompt


def test_unseen_and_stale_prompts_move_with_the_policy():
    # Every prompt gets easier by 0.04 logits a step; the ability carries prompts that were never seen.
    _, _, _, own = _world(pool=2000)
    observed = []
    selectors = (ContextualMoPPS(seed=0), MoPPS(seed=0))
    for selector in selectors:
        _drive(selector, np.random.default_rng(1), lambda step: -2.0 + 0.04 * step + own, 100, pool=2000,
               on_step=lambda choice: observed.extend(choice.ids.tolist()))
    unseen = np.setdiff1d(np.arange(2000), observed)[:200]
    assert len(unseen) == 200
    contextual, mopps = (selector.predict(unseen) for selector in selectors)
    true_mean = float(np.mean(1 / (1 + np.exp(-(-2.0 + 0.04 * 100 + own[unseen])))))
    assert contextual.mean() == pytest.approx(true_mean, abs=0.1)
    assert contextual.mean() > 1 / (1 + np.exp(2.0)) + 0.5  # far above where the policy started
    assert np.all(mopps == 0.5)  # MoPPS: unseen prompts stay at the prior


@pytest.mark.parametrize("jump", [0.0, 0.5])
def test_jump_of_trained_prompts_is_learned_from_revisits(jump):
    # Training on a prompt raises its logit by `jump`, and the policy's ability rises 0.01 per step.
    # kappa and the ability are learned apart (a fifth of the prompts stay untrained and pin the
    # ability). kappa comes out 0.1-0.15 high in this world (assumed-density filtering drops the
    # correlation between the global coefficients and each residual; docs/contextual.md).
    rng = np.random.default_rng(3)
    pool = 1000
    own = rng.standard_normal(pool)
    trained = np.zeros(pool)
    selector = ContextualMoPPS(seed=0)
    for step in range(150):
        ids = rng.choice(pool, 64, replace=False)
        choice = selector.select(ids, 16)
        rates = 1 / (1 + np.exp(-(own[choice.ids] + jump * trained[choice.ids] + 0.01 * step)))
        successes = rng.binomial(8, rates).astype(float)
        selector.update(choice.ids, successes, np.full(16, 8.0))
        selector.policy_updated()
        trained[choice.ids] += (successes > 0) & (successes < 8)
    layout = selector.layout()
    assert selector.state.theta_mean[layout.jump] == pytest.approx(jump + 0.1, abs=0.15)
    assert selector.state.theta_mean[layout.ability] == pytest.approx(1.5, abs=0.3)


def test_stale_evidence_widens_and_fades():
    # Prompt 5 (all 8 right, so not trained: its design row is an unseen prompt's) against an unseen
    # prompt: the gap in mean and variance closes as other prompts' evidence comes in.
    selector = ContextualMoPPS(seed=0, model=ContextualModel(residual_halflife=20.0))
    selector.update([5], [8.0], [8.0])
    selector.policy_updated()
    first_mean, first_var = selector.logit_posterior([5, 999])
    for _ in range(60):
        selector.update([6], [4.0], [8.0])
        selector.policy_updated()
    later_mean, later_var = selector.logit_posterior([5, 999])
    assert first_var[0] < first_var[1] and later_var[0] < later_var[1]
    assert later_var[1] - later_var[0] < 0.2 * (first_var[1] - first_var[0])
    assert 0 < later_mean[0] - later_mean[1] < 0.2 * (first_mean[0] - first_mean[1])


def test_only_mixed_groups_count_as_trained_by_default():
    selector = ContextualMoPPS(seed=0)
    selector.update([0, 1, 2], [0.0, 3.0, 8.0], [8.0, 8.0, 8.0])
    np.testing.assert_array_equal(selector.state.trained, [0.0, 1.0, 0.0])
    everything = ContextualMoPPS(seed=0, training_rule="all")
    everything.update([0, 1, 2], [0.0, 3.0, 8.0], [8.0, 8.0, 8.0])
    np.testing.assert_array_equal(everything.state.trained, [1.0, 1.0, 1.0])


def test_temperature_narrows_the_draw_and_zero_is_greedy():
    rng, features, weights, own = _world(pool=1000)
    ids = np.arange(1000)

    def agreement(temperature):
        selector = ContextualMoPPS(seed=0, temperature=temperature)
        selector.add_features(ids, features)
        _drive(selector, np.random.default_rng(1), lambda step: features @ weights + own, 20, pool=1000)
        choice = selector.select(ids[:300], 30)
        return spearman(choice.scores, choice.predicted_rate), selector

    wide, _ = agreement(1.0)
    narrow, _ = agreement(0.25)
    assert narrow > wide
    greedy_agreement, greedy = agreement(0.0)
    assert greedy_agreement == pytest.approx(1.0)
    state = greedy.rng.bit_generator.state
    choice = greedy.select(ids[:300], 30)
    assert greedy.rng.bit_generator.state == state  # no draw consumed
    np.testing.assert_array_equal(choice.scores, choice.predicted_rate)


def test_unseen_prompts_are_selectable_and_predictions_are_rates():
    selector = ContextualMoPPS(seed=0)
    choice = selector.select(["a", "b", "c", "d"], 2)
    assert len(choice.ids) == 2 and set(choice.ids) <= {"a", "b", "c", "d"}
    np.testing.assert_allclose(choice.predicted_rate, 0.5)
    selector.update(["a"], [8.0], [8.0])
    predicted = selector.predict(["a", "zzz"])
    assert predicted[0] > predicted[1] > 0.5  # the success also raised the shared ability
    assert np.all((predicted > 0) & (predicted < 1))


# -- state ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_resume_with_features_makes_the_same_selections(id_kind, tmp_path):
    rng, features, weights, own = _world(pool=500)
    names = np.arange(500) if id_kind == "int" else np.array([f"q{i}" for i in range(500)], dtype=object)
    logits = features @ weights + own

    def steps(selector, count, seed):
        stream = np.random.default_rng(seed)
        chosen = []
        for _ in range(count):
            positions = stream.choice(500, 64, replace=False)
            choice = selector.select(list(names[positions]), 8)
            picked = positions[choice.index]
            selector.update(list(names[picked]), stream.binomial(8, 1 / (1 + np.exp(-logits[picked]))).astype(float),
                            np.full(8, 8.0))
            selector.policy_updated()
            chosen.append(list(choice.ids))
        return chosen

    uninterrupted = ContextualMoPPS(seed=4, temperature=0.7)
    uninterrupted.add_features(list(names), features)
    reference = steps(uninterrupted, 6, 0)
    reference += steps(uninterrupted, 6, 1)

    stopped = ContextualMoPPS(seed=4, temperature=0.7)
    stopped.add_features(list(names), features)
    first = steps(stopped, 6, 0)
    stopped.save(tmp_path / "state.npz")
    resumed = ContextualMoPPS.load(tmp_path / "state.npz")
    _same_state(stopped.state_dict(), resumed.state_dict())
    assert first + steps(resumed, 6, 1) == reference
    np.testing.assert_array_equal(resumed.predict(list(names[:50])), uninterrupted.predict(list(names[:50])))


def test_load_state_dict_refuses_inconsistent_arrays_and_keeps_state():
    selector = ContextualMoPPS(seed=0)
    selector.add_features(np.arange(20), np.random.default_rng(0).standard_normal((20, 3)))
    selector.update([1, 2], [3.0, 5.0], [8.0, 8.0])
    good = selector.state_dict()
    for key, value in [("u_var", np.zeros(20)), ("theta_cov", np.eye(3)), ("features", np.zeros((20, 2))),
                       ("last_tick", np.zeros(5, dtype=np.int64))]:
        bad = selector.state_dict()
        bad["arrays"][key] = value
        with pytest.raises(ValueError, match="state\\['arrays'\\] is invalid"):
            selector.load_state_dict(bad)
        _same_state(good, selector.state_dict())
    other = ContextualMoPPS(seed=0, temperature=0.5)
    with pytest.raises(ValueError, match="config"):
        other.load_state_dict(good)


@pytest.mark.parametrize("arguments, message", [
    ({"temperature": -1.0}, "temperature"), ({"target": 1.5}, "target"), ({"feature_dim": 0}, "feature_dim"),
    ({"projection_seed": -1}, "projection_seed"), ({"training_rule": "some"}, "training_rule"),
    ({"model": {"residual_sd": 0.0}}, "residual_sd"), ({"model": {"nonsense": 1}}, "model"),
    ({"model": 3}, "model"),
])
def test_constructor_validates(arguments, message):
    with pytest.raises(ValueError, match=message):
        ContextualMoPPS(**arguments)


def test_model_dict_and_record_build_the_same_selector():
    left = ContextualMoPPS(model={"residual_sd": 2.0, "trend": True})
    right = ContextualMoPPS(model=ContextualModel(residual_sd=2.0, trend=True))
    assert left.state_dict()["config"] == right.state_dict()["config"]
    assert left.state.theta_mean.shape == (3,)


def test_selectors_loaded_from_one_state_share_no_arrays():
    source = ContextualMoPPS()
    source.add_features(range(5), np.random.default_rng(0).standard_normal((5, 3)))
    source.update([7], [1.0], [4.0])  # 7: an entry without features
    saved = source.state_dict()
    kept = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in saved["arrays"].items()}
    first, second = ContextualMoPPS(), ContextualMoPPS()
    first.load_state_dict(saved)
    second.load_state_dict(saved)
    predicted = second.predict([7, 1])
    first.add_features([7], [[5.0, 5.0, 5.0]])
    first.update([1, 7], [4.0, 0.0], [4.0, 4.0])
    _same_state(saved["arrays"], kept)
    np.testing.assert_array_equal(second.predict([7, 1]), predicted)


def test_features_beyond_float32_are_refused_and_keep_state():
    selector = ContextualMoPPS()
    selector.add_features(range(50), np.random.default_rng(0).standard_normal((50, 3)))
    before = selector.state_dict()
    with pytest.raises(ValueError, match=r"features\[1, 2\] = 1e\+39"):
        selector.add_features([60, 61], [[0.0, 0.0, 0.0], [0.0, 0.0, 1e39]])
    _same_state(selector.state_dict(), before)
    np.testing.assert_array_equal(np.isfinite(selector.predict(range(50))), True)


def test_rows_the_transform_makes_non_finite_are_refused():
    selector = ContextualMoPPS()
    selector.add_features(range(50), np.random.default_rng(0).standard_normal((50, 2)))
    state = selector.state_dict()
    state["arrays"]["feature_matrix"] = state["arrays"]["feature_matrix"] * 1e300  # finite, as a file may hold
    selector.load_state_dict(state)
    before = selector.state_dict()
    with pytest.raises(ValueError, match=r"features\[1\]"):
        selector.add_features([60, 61], [[0.0, 0.0], [1e10, 1e10]])
    _same_state(selector.state_dict(), before)


@pytest.mark.parametrize("extreme", [1e6, 1e30, -3e38])
def test_extreme_accepted_features_keep_every_prediction_finite(extreme, tmp_path):
    rng = np.random.default_rng(1)
    selector = ContextualMoPPS(seed=1)
    selector.add_features(range(300), rng.standard_normal((300, 3)))
    selector.add_features([500, 501], [[extreme, 0.0, 0.0], [-extreme, extreme, extreme]])
    for _ in range(40):
        choice = selector.select(np.r_[np.arange(300), 500, 501], 8)
        selector.update(choice.ids, rng.integers(0, 9, 8).astype(float), np.full(8, 8.0))
        selector.update([500, 501], rng.choice([0.0, 1.0, 4.0, 7.0, 8.0], 2), [8.0, 8.0])
        selector.policy_updated()
    predicted = selector.predict(np.r_[np.arange(300), 500, 501, 999])
    assert np.isfinite(predicted).all()
    selector.save(tmp_path / "state.npz")
    np.testing.assert_array_equal(ContextualMoPPS.load(tmp_path / "state.npz").predict([500, 501]), predicted[300:302])


def test_one_first_observation_moves_every_unseen_prompt_as_documented():
    """docs/contextual.md, "where it loses": 64 % of a lone observation's evidence goes to the shared
    ability (prior variances 4 against 2.25), so one 16/16 moves an unseen prompt from 0.5 to 0.82."""
    selector = ContextualMoPPS()
    assert selector.predict([999])[0] == pytest.approx(0.5)
    selector.update([0], [16.0], [16.0])
    assert selector.predict([999])[0] == pytest.approx(0.82, abs=0.01)
    selector.update([1], [0.0], [16.0])
    assert selector.predict([999])[0] == pytest.approx(0.48, abs=0.01)
    batch = ContextualMoPPS()
    batch.update(np.arange(16), [16.0] + [8.0] * 15, np.full(16, 16.0))
    assert batch.predict([999])[0] == pytest.approx(0.53, abs=0.01)


# -- time in policy ticks ------------------------------------------------------------------------------

def test_the_model_ages_per_policy_tick_not_per_update():
    # Three batches of evidence from one policy (a refill) must not age the model three times.
    one_tick, three_ticks = ContextualMoPPS(seed=0), ContextualMoPPS(seed=0)
    for selector, ticks_after_each in ((one_tick, False), (three_ticks, True)):
        selector.update([1], [3.0], [8.0])
        for prompt in (2, 3):
            if ticks_after_each:
                selector.policy_updated()
            selector.update([prompt], [3.0], [8.0])
        selector.policy_updated()
    assert one_tick.tick == 1 and three_ticks.tick == 3
    ability = one_tick.layout().ability
    assert one_tick.state.theta_cov[ability, ability] < three_ticks.state.theta_cov[ability, ability]
    # Evidence is stamped with the tick of the policy that produced it.
    np.testing.assert_array_equal(one_tick.state.last_tick, [0, 0, 0])
    np.testing.assert_array_equal(three_ticks.state.last_tick, [0, 1, 2])


@pytest.mark.parametrize("trend", [False, True])
def test_a_pause_of_several_ticks_equals_that_many_single_ticks(trend):
    model = ContextualModel(trend=trend)
    batched, stepped = ContextualMoPPS(model=model), ContextualMoPPS(model=model)
    for selector in (batched, stepped):
        selector.add_features(np.arange(30), np.random.default_rng(0).standard_normal((30, 4)))
        selector.update(np.arange(10), np.arange(10, dtype=float) % 9, np.full(10, 8.0))
    batched.policy_updated(7)
    for _ in range(7):
        stepped.policy_updated()
    np.testing.assert_allclose(batched.state.theta_mean, stepped.state.theta_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batched.state.theta_cov, stepped.state.theta_cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(batched.predict(np.arange(30)), stepped.predict(np.arange(30)), rtol=1e-10)


def test_a_state_saved_before_ticks_existed_loads_with_time_in_updates():
    selector = ContextualMoPPS(seed=0)
    for step in range(3):
        selector.update([step], [3.0], [8.0])
        selector.policy_updated()
    state = selector.state_dict()
    old = copy.deepcopy(state)
    del old["tick"]
    old["arrays"]["last_step"] = old["arrays"].pop("last_tick")
    resumed = ContextualMoPPS(seed=0)
    resumed.load_state_dict(old)
    assert resumed.tick == 3
    _same_state(resumed.state_dict(), state)


# -- learned residual forgetting: residual_halflife="auto" ---------------------------------------------

def _residual_drift_run(selector, logit_sd, seed=0, pool=300, steps=300):
    """Prompts with features and an own logit that takes a random walk of ``logit_sd`` per tick."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((pool, 4))
    weights = rng.standard_normal(4) * 0.5
    own = rng.normal(0.0, 1.0, pool)
    selector.add_features(np.arange(pool), features)
    for _ in range(steps):
        choice = selector.select(rng.choice(pool, 64, replace=False), 16)
        rates = 1.0 / (1.0 + np.exp(-(features[choice.ids] @ weights + own[choice.ids])))
        selector.update(choice.ids, rng.binomial(8, rates).astype(float), np.full(16, 8.0))
        selector.policy_updated()
        own = own + rng.normal(0.0, logit_sd, pool)
    return selector


def test_the_residual_half_life_is_learned_from_the_innovations():
    # Own logits drifting 0.15 per tick: q = 0.0225 logit^2 per tick, an OU half-life toward the
    # residual prior (sd 1.5) of 2 ln 2 * 2.25 / 0.0225 = 139 ticks (measured: 111 and 166 on seeds 0, 1).
    drifting = _residual_drift_run(ContextualMoPPS(seed=0, model={"residual_halflife": "auto"}), 0.15)
    assert 70 < drifting.residual_halflife() < 280
    # Nothing drifts: the learned half-life is an order longer (measured 1,600).
    still = _residual_drift_run(ContextualMoPPS(seed=0, model={"residual_halflife": "auto"}), 0.0)
    assert still.residual_halflife() is None or still.residual_halflife() > 5 * drifting.residual_halflife()
    # The constant stays the default and is what a fixed model reports.
    assert ContextualMoPPS().residual_halflife() == 200.0
    assert ContextualMoPPS().state.drift_moments is None


def test_a_learned_half_life_survives_save_and_load_and_bad_moments_are_refused(tmp_path):
    selector = _residual_drift_run(ContextualMoPPS(seed=0, model={"residual_halflife": "auto"}), 0.15, steps=60)
    selector.save(tmp_path / "auto.npz")
    resumed = ContextualMoPPS.load(tmp_path / "auto.npz")
    assert resumed.residual_halflife() == selector.residual_halflife()
    _same_state(resumed.state_dict(), selector.state_dict())
    before = resumed.state_dict()
    for bad in (np.zeros(4), np.array([1.0, 2.0, np.nan, 0.0, 0.0]), None):
        state = resumed.state_dict()
        state["arrays"]["drift_moments"] = bad
        with pytest.raises(ValueError, match="drift_moments"):
            resumed.load_state_dict(state)
    _same_state(resumed.state_dict(), before)
    fixed = ContextualMoPPS(seed=0).state_dict()
    fixed["arrays"]["drift_moments"] = np.zeros(5)
    with pytest.raises(ValueError, match="drift_moments"):
        ContextualMoPPS(seed=0).load_state_dict(fixed)
    with pytest.raises(ValueError, match="residual_halflife"):
        ContextualMoPPS(model={"residual_halflife": "sometimes"})
