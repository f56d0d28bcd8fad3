"""``mopps.storage``: the one writer, and nested states through the file format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mopps.storage import atomic_write, load_state, save_state, write_json


def test_a_nested_state_round_trips_with_its_types(tmp_path):
    state = {
        "format": "x", "version": 1, "big": 2**100, "small": -3, "none": None, "flag": True, "rate": 0.25,
        "inner": {"ids": ["a", "é", ""], "alpha": np.arange(3.0), "mask": np.array([True, False]),
                  "band": [0.3, 0.7], "empty": [], "deeper": {"codes": np.array([1, 2], dtype=np.int8)}},
    }
    save_state(state, tmp_path / "s.npz")
    loaded = load_state(tmp_path / "s.npz")
    assert loaded["big"] == 2**100 and loaded["small"] == -3 and loaded["none"] is None and loaded["flag"] is True
    assert loaded["inner"]["ids"] == ["a", "é", ""] and loaded["inner"]["band"] == [0.3, 0.7]
    assert loaded["inner"]["empty"] == []
    np.testing.assert_array_equal(loaded["inner"]["alpha"], np.arange(3.0))
    assert loaded["inner"]["deeper"]["codes"].dtype == np.int8
    with np.load(tmp_path / "s.npz") as archive:
        np.testing.assert_array_equal(archive["inner/mask"], [True, False])


@pytest.mark.parametrize("state, where", [
    ({1: 2}, "key 1"), ({"ids": np.array(["a"])}, "ids: arrays of dtype <U1"), ({"a": {3}}, "a: a set"),
    ({"x": {"__array__": "y"}}, "x: the key '__array__' is reserved"),
])
def test_what_cannot_be_stored_is_refused_before_writing(tmp_path, state, where):
    with pytest.raises(ValueError, match=where):
        save_state(state, tmp_path / "s.npz")
    assert not (tmp_path / "s.npz").exists()


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    write_json(tmp_path / "f.json", {"a": 1})

    def broken(handle):
        handle.write(b"partial")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(tmp_path / "f.json", broken)
    assert json.loads((tmp_path / "f.json").read_text()) == {"a": 1}
    assert [path.name for path in tmp_path.iterdir()] == ["f.json"]


def test_a_file_that_is_not_a_state_is_named_in_the_error(tmp_path):
    np.savez(tmp_path / "other.npz", __meta__=np.frombuffer(b'{"hello": 1}', dtype=np.uint8))
    with pytest.raises(ValueError, match="other.npz: not a mopps state file"):
        load_state(tmp_path / "other.npz")
