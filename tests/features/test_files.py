"""Feature files: round trip, numpy-only reading, atomic writes, refusal of bad input and bad files."""

import json
import zipfile

import numpy as np
import pytest

from mopps.features import FEATURES_VERSION, Features, load_features, load_features_for, save_features
from mopps.selectors import MoPPS


def matrix(rows=5, columns=3, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, columns))


def test_round_trip_with_integer_ids(tmp_path):
    X = matrix()
    path = save_features(tmp_path / "f.npz", [10, 3, 7, 0, 99], X, {"source": "columns", "columns": ["a", "b", "c"]})
    ids, loaded, meta = load_features(path)
    assert ids.dtype == np.int64 and ids.tolist() == [10, 3, 7, 0, 99]
    assert loaded.dtype == np.float32 and np.array_equal(loaded, X.astype(np.float32))
    assert meta["source"] == "columns" and meta["columns"] == ["a", "b", "c"]
    assert (meta["count"], meta["dimension"], meta["id_kind"], meta["version"]) == (5, 3, "int", FEATURES_VERSION)
    assert meta["model"] is None and meta["pooling"] is None


def test_round_trip_with_string_ids_and_reading_by_hand(tmp_path):
    ids = ["math/0", "ünï/ć", "", "a" * 300, "x"]
    X = matrix(5, 2).astype(np.float32)
    save_features(tmp_path / "f.npz", ids, X, {"source": "embedding", "model": "m", "pooling": "mean"})
    features = load_features(tmp_path / "f.npz")
    assert isinstance(features, Features) and features.ids == ids and np.array_equal(features.X, X)
    # What the module docstring promises a reader with numpy alone.
    with np.load(tmp_path / "f.npz") as archive:
        meta = json.loads(bytes(archive["__meta__"]))
        blob, offsets = archive["ids.utf8"].tobytes(), archive["ids.offsets"]
        by_hand = [blob[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:])]
        assert by_hand == ids and np.array_equal(archive["features"], X)
    assert meta["format"] == "mopps.features" and meta["pooling"] == "mean"


def test_bytes_per_prompt_are_what_the_docs_say(tmp_path):
    path = save_features(tmp_path / "f.npz", np.arange(10_000), np.zeros((10_000, 64)), {"source": "test"})
    per_prompt = path.stat().st_size / 10_000
    assert 4 * 64 + 8 <= per_prompt < 4 * 64 + 8 + 0.2   # 264 B plus a fixed ~1 kB of headers


@pytest.mark.parametrize(
    "ids, X, meta, message",
    [
        ([1, 2, 3], np.ones((3, 2)) * [[1.0, np.nan]], {"source": "s"}, r"X\[0, 1\] = nan"),
        ([1, 2, 3], np.full((3, 2), 1e39), {"source": "s"}, r"X\[0, 0\] = inf \(as float32\)"),
        ([1, 2], np.ones((3, 2)), {"source": "s"}, r"len\(ids\) = 2 but X has 3 rows"),
        ([1, 2, 1], np.ones((3, 2)), {"source": "s"}, r"ids\[2\] = 1 occurs earlier"),
        (["a", "b", "a"], np.ones((3, 2)), {"source": "s"}, r"ids\[2\] = 'a' occurs earlier"),
        ([1, -2, 3], np.ones((3, 2)), {"source": "s"}, r"ids\[1\] = -2"),
        ([1, "b"], np.ones((2, 2)), {"source": "s"}, r"ids\[1\] = 'b'; ids mixes"),
        ([], np.ones((0, 2)), {"source": "s"}, "ids is empty"),
        ([1, 2], np.ones(2), {"source": "s"}, r"shape \(m, d\)"),
        ([1, 2], np.ones((2, 0)), {"source": "s"}, r"shape \(m, d\)"),
        ([1, 2], np.ones((2, 2)), {}, r"meta\['source'\] = None"),
        ([1, 2], np.ones((2, 2)), {"source": "s", "version": 9}, r"meta sets \['version'\]"),
        ([1, 2], np.ones((2, 2)), {"source": "s", "dimension": 3}, r"meta\['dimension'\] = 3 but X has 2"),
        ([1, 2], np.ones((2, 2)), {"source": "s", "when": object()}, "JSON-serialisable"),
        ([1, 2], np.ones((2, 2)), "source", "meta must be a dict"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, ids, X, meta, message):
    with pytest.raises(ValueError, match=message):
        save_features(tmp_path / "f.npz", ids, X, meta)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = save_features(tmp_path / "f.npz", [1, 2], np.ones((2, 2)), {"source": "old"})

    def torn_savez(handle, **payload):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", torn_savez)
    with pytest.raises(OSError, match="disk full"):
        save_features(path, [5, 6], np.zeros((2, 2)), {"source": "new"})
    assert load_features(path).meta["source"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]


def test_truncated_corrupt_and_foreign_files_are_refused_naming_the_file(tmp_path):
    path = save_features(tmp_path / "f.npz", np.arange(50), matrix(50, 8), {"source": "s"})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read feature file .*truncated\.npz.*truncated or corrupt"):
        load_features(truncated)
    # Flip one byte inside the features block: the zip CRC catches it.
    corrupt = tmp_path / "corrupt.npz"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("features.npy")
    flipped = bytearray(data)
    flipped[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    corrupt.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"corrupt\.npz"):
        load_features(corrupt)
    selector = MoPPS(seed=0)
    selector.save(tmp_path / "state.npz")
    with pytest.raises(ValueError, match=r"state\.npz: not a mopps features file \(__meta__\['format'\]"):
        load_features(tmp_path / "state.npz")
    with pytest.raises(FileNotFoundError, match="no feature file"):
        load_features(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="is a directory"):
        load_features(tmp_path)


def write_raw(path, meta, **arrays):
    payload = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    np.savez(path, **payload)
    return path


def test_other_versions_and_inconsistent_files_are_refused(tmp_path):
    good = {"format": "mopps.features", "version": 1, "count": 2, "dimension": 3, "id_kind": "int",
            "source": "s", "model": None, "pooling": None}
    ids, X = np.array([4, 5], dtype=np.int64), np.ones((2, 3), dtype=np.float32)
    assert load_features(write_raw(tmp_path / "ok.npz", good, ids=ids, features=X)).ids.tolist() == [4, 5]
    cases = {
        "v2": ({**good, "version": 2}, dict(ids=ids, features=X), "features file version 2 is not supported"),
        "shape": ({**good, "dimension": 4}, dict(ids=ids, features=X), r"promises float32 \(2, 4\)"),
        "dtype": (good, dict(ids=ids, features=X.astype(np.float64)), "features is float64"),
        "nan": (good, dict(ids=ids, features=np.array([[1, 2, np.nan], [0, 0, 0]], np.float32)), r"X\[0, 2\]"),
        "dup": (good, dict(ids=np.array([4, 4]), features=X), r"ids\[1\] = 4 occurs earlier"),
        "ids": (good, dict(ids=np.array([4, 5, 6]), features=X), r"ids is int64 \(3,\)"),
        "nosource": ({k: v for k, v in good.items() if k != "source"}, dict(ids=ids, features=X), "lacks"),
        "kind": ({**good, "id_kind": "float"}, dict(ids=ids, features=X), "id_kind = 'float'"),
        "offsets": ({**good, "id_kind": "str"}, {"ids.utf8": np.frombuffer(b"ab", np.uint8),
                                                 "ids.offsets": np.array([0, 1, 3]), "features": X},
                    "do not describe"),
    }
    for name, (meta, arrays, message) in cases.items():
        path = write_raw(tmp_path / f"{name}.npz", meta, **arrays)
        with pytest.raises(ValueError, match=rf"{name}\.npz: .*{message}"):
            load_features(path)


def test_load_features_for_keeps_the_rows_of_the_trainers_prompts(tmp_path):
    path = save_features(tmp_path / "f.npz", [7, 3, 99, 5], np.arange(8.0).reshape(4, 2), {"source": "test"})
    ids, X, meta = load_features_for(path, np.array([3, 5, 7, 8]))
    assert ids.tolist() == [7, 3, 5] and meta["id_kind"] == "int"  # file order; 99 is not a prompt here
    np.testing.assert_array_equal(X, [[0, 1], [2, 3], [6, 7]])
    named = save_features(tmp_path / "s.npz", ["b", "zz", "a"], np.ones((3, 1)), {"source": "test"})
    assert load_features_for(named, ["a", "b", "c"]).ids == ["b", "a"]
    with pytest.raises(ValueError, match="keyed by int ids \\(e.g. 7\\) but the prompt ids here are str"):
        load_features_for(path, ["a"])
    with pytest.raises(ValueError, match="none of the 4 prompt ids .*\\(e.g. 7\\) is a prompt id here \\(e.g. 1\\)"):
        load_features_for(path, np.array([1, 2]))
