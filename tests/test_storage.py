"""``mopps.storage``: the one writer, and nested states through the file format."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from mopps.storage import (
    atomic_write,
    atomic_write_folder,
    current_umask,
    load_state,
    remove_folder,
    save_state,
    write_json,
)


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


def _damaged(path, change) -> None:
    data = bytearray(path.read_bytes())
    change(data, data.rfind(b"PK\x01\x02"))  # the last central-directory header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("change", [
    lambda data, at: data.__setitem__(at + 10, 99),  # an unknown compression method
    lambda data, at: data.__setitem__(at + 8, data[at + 8] | 1),  # the "encrypted" flag
])
def test_a_damaged_zip_header_is_a_value_error_naming_the_file(tmp_path, change):
    save_state({"format": "x", "alpha": np.arange(3.0)}, tmp_path / "s.npz")
    _damaged(tmp_path / "s.npz", change)
    with pytest.raises(ValueError, match=r"cannot read mopps state .*s\.npz"):
        load_state(tmp_path / "s.npz")


def test_deeply_nested_meta_is_a_value_error_naming_the_file(tmp_path):
    np.savez(tmp_path / "deep.npz", __meta__=np.frombuffer(b"[" * 100000, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"cannot read mopps state .*deep\.npz"):
        load_state(tmp_path / "deep.npz")


def test_states_the_loader_refuses_after_reading_name_the_file(tmp_path):
    from mopps import MoPPS, SelectionLoop, Uniform

    selector_file, loop_file = tmp_path / "selector.npz", tmp_path / "loop.npz"
    MoPPS().save(selector_file)
    loop = SelectionLoop(MoPPS(), np.arange(4))
    loop.save(loop_file)
    with pytest.raises(ValueError, match=r"selector\.npz: not a mopps loop state"):
        loop.load(selector_file)
    state = loop.state_dict()
    save_state({**state, "version": 99}, loop_file)
    with pytest.raises(ValueError, match=r"loop\.npz: loop state version 99"):
        loop.load(loop_file)
    with pytest.raises(ValueError, match=r"selector\.npz: state was saved by MoPPS, not Uniform"):
        Uniform.load(selector_file)
    broken = {**state, "selector": {**state["selector"], "arrays": {**state["selector"]["arrays"],
                                                                   "alpha": np.zeros(2)}}}
    save_state(broken, loop_file)
    with pytest.raises(ValueError, match=r"loop\.npz: state\['selector'\]\['arrays'\] is invalid"):
        loop.load(loop_file)
    with pytest.raises(ValueError, match=r"^state\['selector'\]\['arrays'\] is invalid"):
        loop.load_state_dict(broken)


def test_a_folder_appears_whole_with_plain_modes_or_not_at_all(tmp_path):
    def fill(folder):
        (folder / "a.bin").write_bytes(b"a")
        (folder / "b.json").write_text("{}")

    atomic_write_folder(tmp_path / "entry", fill)
    assert sorted(item.name for item in (tmp_path / "entry").iterdir()) == ["a.bin", "b.json"]
    assert stat.S_IMODE(os.stat(tmp_path / "entry" / "a.bin").st_mode) == 0o666 & ~current_umask()
    assert stat.S_IMODE(os.stat(tmp_path / "entry").st_mode) == 0o777 & ~current_umask()

    def failing(folder):
        (folder / "half.bin").write_bytes(b"h")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_folder(tmp_path / "other", failing)
    assert [item.name for item in tmp_path.iterdir()] == ["entry"]  # no temporary folder left behind


def test_an_existing_folder_is_not_replaced_and_remove_folder_takes_it_away(tmp_path):
    atomic_write_folder(tmp_path / "entry", lambda folder: (folder / "first").write_bytes(b"1"))
    with pytest.raises(FileExistsError, match="entry exists"):
        atomic_write_folder(tmp_path / "entry", lambda folder: (folder / "second").write_bytes(b"2"))
    assert [item.name for item in (tmp_path / "entry").iterdir()] == ["first"]
    remove_folder(tmp_path / "entry")
    remove_folder(tmp_path / "entry")  # gone already (another process removed it): no error
    assert list(tmp_path.iterdir()) == []
