"""The shared conformance suite: every selector passes every test here.

Determinism under a seed, state round trips (in memory and through files) that continue with the
same selections, rejection of bad input with the state left exactly as it was, duplicate ids,
empty input, k > candidates, string ids, and a scale smoke test.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.selectors import SELECTORS
from mopps.selectors.base import Selection

NAMES = sorted(SELECTORS)


def make(name, seed=0):
    return SELECTORS[name][0](seed)


def run_steps(selector, steps, rng, pool=200, k=8, n=8, id_kind="int"):
    """Drive ``selector`` through select/update steps with simulated rollouts; return the choices."""
    ids = np.arange(pool) if id_kind == "int" else [f"prompt-{i}" for i in range(pool)]
    rates = np.linspace(0.0, 1.0, pool)
    chosen = []
    for _ in range(steps):
        order = rng.permutation(pool)[: 4 * k]
        candidates = ids[order] if id_kind == "int" else [ids[i] for i in order]
        choice = selector.select(candidates, k)
        positions = order[choice.index]
        successes = rng.binomial(n, rates[positions]).astype(float)
        selector.update(choice.ids, successes, np.full(k, float(n)))
        chosen.append(list(choice.ids) if id_kind == "str" else choice.ids.tolist())
    return chosen


def assert_same_state(left, right):
    assert type(left) is type(right)
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same_state(left[key], right[key])
    elif isinstance(left, np.ndarray):
        np.testing.assert_array_equal(left, right)
    else:
        assert left == right


@pytest.mark.parametrize("name", NAMES)
def test_selection_fields(name):
    selector = make(name)
    candidates = np.arange(10, 40)
    choice = selector.select(candidates, 7)
    assert isinstance(choice, Selection)
    assert choice.index.dtype == np.int64 and choice.index.shape == (7,)
    assert len(set(choice.index.tolist())) == 7
    assert ((choice.index >= 0) & (choice.index < 30)).all()
    np.testing.assert_array_equal(choice.ids, candidates[choice.index])
    assert choice.scores.shape == (30,)
    if choice.predicted_rate is not None:
        assert choice.predicted_rate.shape == (30,)
        assert ((choice.predicted_rate >= 0) & (choice.predicted_rate <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_seed(name):
    first = run_steps(make(name, seed=3), 6, np.random.default_rng(1))
    second = run_steps(make(name, seed=3), 6, np.random.default_rng(1))
    assert first == second


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_resume_from_file_makes_the_same_selections(name, id_kind, tmp_path):
    uninterrupted = make(name)
    reference = run_steps(uninterrupted, 10, np.random.default_rng(5), id_kind=id_kind)

    stopped = make(name)
    rng = np.random.default_rng(5)
    before = run_steps(stopped, 4, rng, id_kind=id_kind)
    stopped.save(tmp_path / "state.npz")
    factory_kwargs = SELECTORS[name][1]
    resumed = type(stopped).load(tmp_path / "state.npz", **factory_kwargs)
    assert_same_state(resumed.state_dict(), stopped.state_dict())
    after = run_steps(resumed, 6, rng, id_kind=id_kind)
    assert before + after == reference


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_in_memory(name):
    source = make(name)
    run_steps(source, 3, np.random.default_rng(0))
    target = make(name, seed=99)
    target.load_state_dict(source.state_dict())
    assert_same_state(target.state_dict(), source.state_dict())
    candidates = np.arange(50)
    np.testing.assert_array_equal(source.select(candidates, 5).ids, target.select(candidates, 5).ids)


def _bad_selects():
    return [
        ("k", lambda s: s.select(np.arange(10), 0)),
        ("k", lambda s: s.select(np.arange(10), 11)),
        ("k", lambda s: s.select(np.arange(10), 2.5)),
        ("empty", lambda s: s.select([], 1)),
        ("candidate_ids[4]", lambda s: s.select([1, 2, 3, 4, 2], 2)),
        ("candidate_ids[1]", lambda s: s.select(np.array([3, -1, 5]), 1)),
        ("candidate_ids", lambda s: s.select(np.array([0.5, 1.5]), 1)),
        ("candidate_ids[1]", lambda s: s.select([1, "a"], 1)),
    ]


def _bad_updates():
    ids = [1, 2, 3]
    return [
        ("successes[1]", lambda s: s.update(ids, [1.0, np.nan, 2.0], [8, 8, 8])),
        ("successes[0]", lambda s: s.update(ids, [np.inf, 1.0, 2.0], [8, 8, 8])),
        ("successes[2]", lambda s: s.update(ids, [1.0, 1.0, -1.0], [8, 8, 8])),
        ("successes[1]", lambda s: s.update(ids, [1.0, 9.0, 1.0], [8, 8, 8])),
        ("trials[0]", lambda s: s.update(ids, [0.0, 1.0, 1.0], [0, 8, 8])),
        ("trials[2]", lambda s: s.update(ids, [0.0, 1.0, 1.0], [8, 8, np.nan])),
        ("len(ids)", lambda s: s.update(ids, [1.0, 1.0], [8, 8])),
        ("len(successes)", lambda s: s.update(ids, [1.0, 1.0, 1.0], [8, 8])),
        ("ids[0]", lambda s: s.update([-4, 2, 3], [1.0, 1.0, 1.0], [8, 8, 8])),
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", range(len(_bad_selects()) + len(_bad_updates())))
def test_bad_input_is_rejected_and_changes_nothing(name, case):
    selector = make(name)
    run_steps(selector, 3, np.random.default_rng(0))
    before = selector.state_dict()
    cases = _bad_selects() + _bad_updates()
    expected_name, call = cases[case]
    with pytest.raises(ValueError) as raised:
        call(selector)
    message = str(raised.value)
    assert expected_name in message or (expected_name == "empty" and "empty" in message), message
    assert_same_state(selector.state_dict(), before)


@pytest.mark.parametrize("name", NAMES)
def test_id_kind_is_fixed_by_first_use(name):
    selector = make(name)
    selector.update(["a", "b"], [1.0, 0.0], [2.0, 2.0])
    before = selector.state_dict()
    if name in ("oracle", "dynamic_sampling"):
        # Stateless in ids: any kind is fine on the next call.
        selector.select([1, 2, 3], 2)
        return
    with pytest.raises(ValueError, match="int ids"):
        selector.select([1, 2, 3], 2)
    with pytest.raises(ValueError, match="int ids"):
        selector.update([1], [1.0], [1.0])
    assert_same_state(selector.state_dict(), before)


@pytest.mark.parametrize("name", NAMES)
def test_duplicate_ids_in_one_update_are_one_observation(name):
    combined = make(name)
    combined.update([7, 7, 9], [1.0, 2.0, 0.0], [4.0, 4.0, 2.0])
    single = make(name)
    single.update([7, 9], [3.0, 0.0], [8.0, 2.0])
    assert_same_state(combined.state_dict(), single.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_empty_update_is_a_no_op(name):
    selector = make(name)
    before = selector.state_dict()
    selector.update([], [], [])
    assert_same_state(selector.state_dict(), before)


@pytest.mark.parametrize("name", NAMES)
def test_k_equal_to_candidates_takes_all(name):
    choice = make(name).select(["x", "y", "z"], 3)
    assert sorted(choice.ids) == ["x", "y", "z"]


@pytest.mark.parametrize("name", NAMES)
def test_scale_smoke(name):
    selector = make(name)
    rng = np.random.default_rng(0)
    pool = 200_000
    for _ in range(3):
        candidates = rng.choice(pool, 20_000, replace=False)
        choice = selector.select(candidates, 1_000)
        assert len(np.unique(choice.ids)) == 1_000
        selector.update(choice.ids, rng.integers(0, 9, 1_000).astype(float), np.full(1_000, 8.0))


def _corruptions(state):
    """Ways a state dict can be wrong, each of which must leave the target selector untouched."""
    yield {**state, "step": "x"}
    yield {**state, "step": -5}
    yield {**state, "step": 2.7}
    yield {**state, "step": None}
    yield {**state, "rng": {"bit_generator": "PCG64", "state": "nonsense"}}
    if state["arrays"]:
        yield {**state, "arrays": {}}
    yield {**state, "version": 2}
    yield {**state, "selector": "SomethingElse"}
    arrays = dict(state["arrays"])
    for key, value in arrays.items():
        if isinstance(value, np.ndarray) and len(value):
            yield {**state, "arrays": {**arrays, key: value[:-1]}}


@pytest.mark.parametrize("name", NAMES)
def test_a_rejected_state_leaves_the_whole_selector_unchanged(name):
    source = make(name, seed=1)
    run_steps(source, 3, np.random.default_rng(2), pool=50)
    target = make(name, seed=7)
    run_steps(target, 2, np.random.default_rng(3), pool=50)
    before = target.state_dict()
    for corrupt in _corruptions(source.state_dict()):
        with pytest.raises(ValueError):
            target.load_state_dict(corrupt)
        assert_same_state(target.state_dict(), before)


@pytest.mark.parametrize("name", NAMES)
def test_seed_must_be_an_integer_the_selector_owns(name):
    factory = SELECTORS[name][0]
    with pytest.raises(ValueError, match="seed"):
        factory(np.random.default_rng(0))


@pytest.mark.parametrize("name", ["mopps_topk", "history"])
def test_ids_near_the_int64_limit_round_trip_through_a_file(name, tmp_path):
    selector = make(name)
    ids = np.array([2**63 - 1, 0, 2**40, 2**62 + 11], dtype=np.uint64)
    selector.update(ids, [1.0, 2.0, 3.0, 4.0], [8.0] * 4)
    selector.save(tmp_path / "s.npz")
    loaded = type(selector).load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.predict(ids), selector.predict(ids))
    with pytest.raises(ValueError, match=r"ids\[0\]"):
        selector.update([2**64], [1.0], [1.0])
