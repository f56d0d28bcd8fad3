import json
import os

import numpy as np
import pytest

from mopps import HistoryFilter, MoPPS, Uniform
from mopps.selectors import persistence


def trained(seed=0):
    selector = MoPPS(discount=0.5, seed=seed)
    selector.update(np.arange(100), np.arange(100) % 9, np.full(100, 8.0))
    return selector


def test_file_is_readable_with_numpy_and_json(tmp_path):
    path = tmp_path / "state.npz"
    trained().save(path)
    with np.load(path) as archive:
        meta = json.loads(bytes(archive["__meta__"]))
        assert meta["format"] == "mopps.selector-state" and meta["version"] == 1
        assert meta["selector"] == "MoPPS" and meta["step"] == 1
        np.testing.assert_array_equal(archive["ids"], np.arange(100))
        assert archive["alpha"].shape == (100,)


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
        alpha_bytes = archive["alpha"].tobytes()
    position = bytes(data).find(alpha_bytes[:16])
    data[position + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot read selector state"):
        MoPPS.load(path)


def test_other_version_and_other_class_are_refused(tmp_path):
    path = tmp_path / "state.npz"
    state = trained().state_dict()
    state["version"] = 99
    persistence.save_state({**state, "version": 1}, path)
    with pytest.raises(ValueError, match="saved by MoPPS, not Uniform"):
        Uniform.load(path)
    with pytest.raises(ValueError, match="version 99"):
        MoPPS().load_state_dict(state)
    meta_only = {**trained().state_dict()}
    persistence.save_state(meta_only, path)
    raw = dict(np.load(path))
    meta = json.loads(bytes(raw["__meta__"]))
    meta["version"] = 2
    raw["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **raw)
    with pytest.raises(ValueError, match="format version 2 is not supported"):
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
    assert loaded.skip_easy == selector.skip_easy
    np.testing.assert_array_equal(loaded.predict(["a", "b", "c", "d"]), [1.0, 0.0, 0.375, 0.5])


def _rewrite_meta(path, change):
    raw = dict(np.load(path))
    meta = json.loads(bytes(raw["__meta__"]))
    meta = change(meta)
    raw["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez(handle, **raw)


@pytest.mark.parametrize("change", [
    lambda meta: {key: value for key, value in meta.items() if key != "scalars"},
    lambda meta: {key: value for key, value in meta.items() if key != "rng"},
    lambda meta: [meta],
    lambda meta: {**meta, "config": {**meta["config"], "unknown_option": 1}},
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
