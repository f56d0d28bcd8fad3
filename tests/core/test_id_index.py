import numpy as np
import pytest

from mopps.core.id_index import IdIndex, first_duplicate, normalize_ids


@pytest.mark.parametrize("scale", [1, 1_000, 2**40])  # bool-mark, scatter and sort regimes
def test_first_duplicate_finds_the_second_occurrence_in_every_regime(scale):
    rng = np.random.default_rng(0)
    ids = rng.choice(5_000, 2_000, replace=False).astype(np.int64) * scale
    assert first_duplicate("int", ids) == -1
    repeated = ids.copy()
    repeated[1_500] = repeated[700]
    repeated[1_800] = repeated[10]
    assert first_duplicate("int", repeated) == 1_500
    assert first_duplicate("str", ["a", "b", "a"]) == 2


def test_index_switches_from_dense_to_sparse_and_keeps_every_slot():
    index = IdIndex()
    first = index.insert("int", np.arange(10, dtype=np.int64))
    second = index.insert("int", np.array([2**50, 3, 2**45], dtype=np.int64))
    third = index.insert("int", np.array([2**44, 11], dtype=np.int64))
    assert first.tolist() == list(range(10)) and second.tolist() == [10, 3, 11]
    assert third.tolist() == [12, 13]
    lookup = np.array([2**45, 0, 2**44, 11, 99, 2**50], dtype=np.int64)
    assert index.find("int", lookup).tolist() == [11, 0, 12, 13, -1, 10]


@pytest.mark.parametrize("ids, position", [([True, 2], 0), ([2, True], 1), ((1, np.bool_(True)), 1), ([False], 0)])
def test_a_bool_is_not_an_id_even_among_integers(ids, position):
    # numpy alone would read [True, 2] as the integer ids [1, 2].
    with pytest.raises(ValueError, match=rf"prompt_ids\[{position}\] = .*(True|False)_?; ids must be"):
        normalize_ids(ids, "prompt_ids")
    assert normalize_ids([1, 2], "prompt_ids")[1].tolist() == [1, 2]
