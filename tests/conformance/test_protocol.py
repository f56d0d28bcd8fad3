"""The shared conformance suite: every built-in selector passes ``mopps.testing.check_selector``
(determinism and seed, state round trips in memory and through files, bad input refused with the state
unchanged, duplicates, empty input, k, corrupt states), plus what the public checker leaves out: the
id kind fixed at first use, a scale smoke test and ids at the int64 limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.selectors import KEYED_BY_ID, SELECTORS
from mopps.testing import check_selector

NAMES = sorted(SELECTORS)


def make(name, seed=0):
    return SELECTORS[name][0](seed)


@pytest.mark.parametrize("name", NAMES)
def test_check_selector_passes(name):
    factory, load_kwargs = SELECTORS[name]
    check_selector(factory, load_kwargs)


@pytest.mark.parametrize("name", KEYED_BY_ID)
def test_id_kind_is_fixed_by_first_use(name):
    selector = make(name)
    selector.update(["a", "b"], [1.0, 0.0], [2.0, 2.0])
    before = selector.state_dict()
    with pytest.raises(ValueError, match="int ids"):
        selector.select([1, 2, 3], 2)
    with pytest.raises(ValueError, match="int ids"):
        selector.update([1], [1.0], [1.0])
    assert check_state_unchanged(selector, before)


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(KEYED_BY_ID)))
def test_selectors_without_per_id_state_take_either_kind_after_each_other(name):
    selector = make(name)
    selector.update(["a", "b"], [1.0, 0.0], [2.0, 2.0])
    assert len(selector.select([1, 2, 3], 2)) == 2
    assert len(selector.select(["x", "y", "z"], 2)) == 2


def check_state_unchanged(selector, before) -> bool:
    after = selector.state_dict()
    return after["step"] == before["step"] and after["rng"] == before["rng"] and all(
        np.array_equal(np.asarray(after["arrays"][key]), np.asarray(value)) for key, value in before["arrays"].items())


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
