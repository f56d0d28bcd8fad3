import json
import os
from pathlib import Path

import numpy as np
import pytest

from mopps import HistoryFilter, MoPPS, Uniform
from mopps import storage


def trained(seed=0):
    selector = MoPPS(discount=0.5, seed=seed)
    selector.update(np.arange(100), np.arange(100) % 9, np.full(100, 8.0))
    return selector


DATA = Path(__file__).parent / "data"


def test_file_is_readable_with_numpy_and_json(tmp_path):
    path = tmp_path / "state.npz"
    trained().save(path)
    with np.load(path) as archive:
        meta = json.loads(bytes(archive["__meta__"]))
        assert meta["file_format"] == "mopps.state-file" and meta["file_version"] == 2
        state = meta["state"]
        assert state["format"] == "mopps.selector-state" and state["version"] == 1
        assert state["selector"] == "MoPPS" and state["step"] == 1
        assert state["arrays"]["alpha"] == {"__array__": "arrays/alpha"}
        np.testing.assert_array_equal(archive["arrays/ids"], np.arange(100))
        assert archive["arrays/alpha"].shape == (100,)


# Written by mopps 0.1 (file version 1) before the learned state became a record; what the old code
# selected next after loading them is recorded beside each.
def test_version_1_files_load_and_continue_as_they_did():
    selector = MoPPS.load(DATA / "mopps_v1.npz")
    assert selector.step == 1 and selector._config() == {
        "prior": [2.0, 1.0], "discount": 0.5, "target": 0.5, "strategy": "topk", "band": [0.3, 0.7]}
    np.testing.assert_array_equal(selector.posterior([5, 6, 9])[0], [5.0, 9.0, 6.0])
    np.testing.assert_array_equal(selector.state.prompt_prior_alpha[:2], [5.0, 8.0])
    assert selector.select(np.arange(20), 4).ids.tolist() == [14, 19, 13, 6]

    history = HistoryFilter.load(DATA / "history_v1.npz")
    assert history.state.ids == ["a", "b", "c", "\u00e9"] and history.state.skip_easy == 0.51
    assert history.select(["a", "b", "c", "d", "e"], 3).ids == ["a", "c", "d"]


def test_a_version_1_file_read_and_written_again_reads_the_same(tmp_path):
    selector = MoPPS.load(DATA / "mopps_v1.npz")
    selector.save(tmp_path / "v2.npz")
    again = MoPPS.load(tmp_path / "v2.npz")
    first, second = selector.state_dict(), again.state_dict()
    assert first["rng"] == second["rng"] and first["config"] == second["config"]
    for key, value in first["arrays"].items():
        np.testing.assert_array_equal(second["arrays"][key], value)


@pytest.mark.parametrize("keep_bytes", [0, 10, 200, -50])
def test_truncated_files_fail_clearly(tmp_path, keep_bytes):
    path = tmp_path / "state.npz"
    trained().save(path)
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes] if keep_bytes >= 0 else data[:keep_bytes])
    with pytest.raises(ValueError, match="cannot read selector state"):
        MoPPS.load(path)


def test_corrupted_payload_fails_on_crc(tmp_path):
    path = tmp_path / "state.npz"
    trained().save(path)
    data = bytearray(path.read_bytes())
    with np.load(path) as archive:
        alpha_bytes = archive["arrays/alpha"].tobytes()
    position = bytes(data).find(alpha_bytes[:16])
    data[position + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot read selector state"):
        MoPPS.load(path)


def test_other_version_and_other_class_are_refused(tmp_path):
    path = tmp_path / "state.npz"
    state = trained().state_dict()
    state["version"] = 99
    storage.save_state({**state, "version": 1}, path)
    with pytest.raises(ValueError, match="saved by MoPPS, not Uniform"):
        Uniform.load(path)
    with pytest.raises(ValueError, match="version 99"):
        MoPPS().load_state_dict(state)
    storage.save_state(trained().state_dict(), path)
    _rewrite_meta(path, lambda meta: {**meta, "file_version": 3})
    with pytest.raises(ValueError, match="state file version 3 is not supported"):
        MoPPS.load(path)
    with pytest.raises(FileNotFoundError):
        MoPPS.load(tmp_path / "missing.npz")


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    first = trained(seed=1)
    first.save(path)
    before = path.read_bytes()

    def broken_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        trained(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]  # no temp file left behind


def test_inconsistent_arrays_are_refused_and_state_is_kept():
    selector = trained()
    before = selector.state_dict()
    for change in ({"alpha": np.ones(3)}, {"beta": -np.ones(100)}, {"ids": np.zeros(100, dtype=np.int64)}):
        state = selector.state_dict()
        state["arrays"].update(change)
        with pytest.raises(ValueError, match="state\\['arrays'\\] is invalid"):
            selector.load_state_dict(state)
        np.testing.assert_array_equal(selector.state_dict()["arrays"]["alpha"], before["arrays"]["alpha"])


def test_config_mismatch_is_refused():
    state = trained().state_dict()
    with pytest.raises(ValueError, match="config"):
        MoPPS(discount=1.0).load_state_dict(state)


def test_history_filter_state_round_trip(tmp_path):
    selector = HistoryFilter(seed=4)
    selector.update(["a", "b", "c"], [8.0, 0.0, 3.0], [8.0, 8.0, 8.0])
    selector.save(tmp_path / "h.npz")
    loaded = HistoryFilter.load(tmp_path / "h.npz")
    assert loaded.state.skip_easy == selector.state.skip_easy
    np.testing.assert_array_equal(loaded.predict(["a", "b", "c", "d"]), [1.0, 0.0, 0.375, 0.5])


def _rewrite_meta(path, change):
    raw = dict(np.load(path))
    meta = json.loads(bytes(raw["__meta__"]))
    meta = change(meta)
    raw["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **raw)


def _without(mapping, key):
    return {name: value for name, value in mapping.items() if name != key}


@pytest.mark.parametrize("change", [
    lambda meta: _without(meta, "state"),
    lambda meta: {**meta, "state": _without(meta["state"], "rng")},
    lambda meta: {**meta, "state": {**meta["state"], "arrays": {"__array__": "missing"}}},
    lambda meta: {**meta, "state": {**meta["state"], "step": {"__int__": "x"}}},
    lambda meta: {**meta, "state": [meta["state"]]},
    lambda meta: [meta],
    lambda meta: {**meta, "state": {**meta["state"], "config": {**meta["state"]["config"], "unknown_option": 1}}},
])
def test_corrupt_metadata_in_a_valid_zip_fails_with_value_error(tmp_path, change):
    path = tmp_path / "state.npz"
    trained().save(path)
    _rewrite_meta(path, change)
    with pytest.raises(ValueError):
        MoPPS.load(path)


def test_a_directory_is_not_a_state(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        MoPPS.load(tmp_path)


def test_saved_files_get_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        trained().save(tmp_path / "state.npz")
    finally:
        os.umask(mask)
    assert (tmp_path / "state.npz").stat().st_mode & 0o777 == 0o644
