"""Explicit-column features from files written by `mopps data`: one-hot, standardisation, length, ids."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from _math_rows import LEVELS, PROBLEMS, TYPES
from mopps.features import load_features, save_features
from mopps.features.columns import column_features, encode_columns
from mopps.integrations.verl.keys import prompt_key


def test_math_level_and_type_become_one_hot_columns_keyed_by_prompt_id(math_data):
    features = column_features(math_data / "train.parquet", categorical=["extra_info.level", "extra_info.type"])
    frame = pd.read_parquet(math_data / "train.parquet")
    assert features.ids == [info["prompt_id"] for info in frame["extra_info"]]
    levels, types = sorted(set(LEVELS)), sorted(set(TYPES))
    names = [f"extra_info.level={v}" for v in levels] + [f"extra_info.type={v}" for v in types]
    assert features.meta["columns"] == names
    assert features.X.dtype == np.float32 and features.X.shape == (8, len(levels) + len(types))
    expected = np.array([[lv == v for v in levels] + [ty == v for v in types] for lv, ty in zip(LEVELS, TYPES)])
    assert np.array_equal(features.X, expected.astype(np.float32))
    assert features.meta["encoding"]["categorical"]["extra_info.level"] == levels


def test_the_trl_folder_gives_the_same_features_under_the_same_ids(math_data):
    verl = column_features(math_data / "train.parquet", categorical=["extra_info.level"], length="chars")
    trl = column_features(math_data / "trl" / "train", categorical=["level"], length="chars")
    assert trl.ids == verl.ids and np.array_equal(trl.X, verl.X)


def test_prompt_length_is_log_then_standardised(math_data):
    features = column_features(math_data / "train.parquet", length="chars")
    suffix = " Let's think step by step and output the final answer within \\boxed{}."
    log_length = np.log1p([len(problem + suffix) for problem in PROBLEMS])
    expected = (log_length - log_length.mean()) / log_length.std()
    assert features.meta["columns"] == ["log1p_length_chars"]
    assert np.allclose(features.X[:, 0], expected, atol=1e-6)
    stats = features.meta["encoding"]["numeric"]["log1p_length_chars"]
    assert stats["mean"] == pytest.approx(log_length.mean()) and stats["std"] == pytest.approx(log_length.std())


def test_numeric_columns_inside_structs_are_standardised(countdown_data):
    features = column_features(countdown_data / "train.parquet", numeric=["reward_model.ground_truth.target"],
                               id_key="index")
    targets = np.array([row["ground_truth"]["target"] for row in pd.read_parquet(countdown_data / "train.parquet")
                        ["reward_model"]], dtype=np.float64)
    assert features.ids.tolist() == list(range(30))
    assert np.allclose(features.X[:, 0], (targets - targets.mean()) / targets.std(), atol=1e-6)
    assert abs(features.X.mean()) < 1e-6 and features.X.std() == pytest.approx(1.0, abs=1e-6)


def test_verl_ids_match_the_verl_adapter_keys(math_data):
    features = column_features(math_data / "train.parquet", length="chars", id_key="verl")
    frame = pd.read_parquet(math_data / "train.parquet")
    assert features.ids == [prompt_key(s, dict(i)) for s, i in zip(frame["data_source"], frame["extra_info"])]


def test_features_round_trip_through_a_file(math_data, tmp_path):
    ids, X, meta = column_features(math_data / "train.parquet", categorical=["extra_info.type"], length="chars")
    save_features(tmp_path / "f.npz", ids, X, meta)
    loaded = load_features(tmp_path / "f.npz")
    assert loaded.ids == ids and np.array_equal(loaded.X, X) and loaded.meta["source"] == "columns"
    assert loaded.meta["columns"] == meta["columns"] and loaded.meta["dimension"] == X.shape[1]


def test_encode_columns_edge_cases():
    X, names, encoding = encode_columns({"c": ["b", None, "a", "b"]}, {"flat": np.full(4, 3.0)})
    assert names == ["c=a", "c=b", "flat"]
    assert np.array_equal(X, [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]])   # missing: no category; constant: 0
    assert encoding["numeric"]["flat"] == {"mean": 3.0, "std": 0.0}
    with pytest.raises(ValueError, match=r"different lengths"):
        encode_columns({"c": ["a"]}, {"n": np.ones(2)})
    with pytest.raises(ValueError, match=r"n\[1\] = nan"):
        encode_columns({}, {"n": [1.0, np.nan]})
    with pytest.raises(ValueError, match=r"c\[0\] = \[1\]"):
        encode_columns({"c": [[1], [2]]})
    with pytest.raises(ValueError, match="300 distinct values"):
        encode_columns({"c": [str(i) for i in range(300)]})
    with pytest.raises(ValueError, match="no columns"):
        encode_columns({}, {})


def write_rows(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_bad_columns_and_ids_are_refused_naming_the_row(math_data, tmp_path):
    train = math_data / "train.parquet"
    with pytest.raises(ValueError, match=r"no column 'extra_info.grade': 'extra_info' has fields \[.*'level'"):
        column_features(train, categorical=["extra_info.grade"])
    with pytest.raises(ValueError, match="no column 'difficulty'"):
        column_features(train, numeric=["difficulty"])
    with pytest.raises(ValueError, match=r"extra_info.level is a string column; numeric"):
        column_features(train, numeric=["extra_info.level"])
    with pytest.raises(ValueError, match="needs a tokenizer"):
        column_features(train, length="tokens")
    prompt = [[{"role": "user", "content": "x"}]] * 3
    missing = write_rows(tmp_path / "m.parquet", prompt=prompt, prompt_id=["a", "b", "c"], score=[1.0, None, 2.0])
    with pytest.raises(ValueError, match=r"score\[1\] = nan"):
        column_features(missing, numeric=["score"])
    repeated = write_rows(tmp_path / "r.parquet", prompt=prompt, prompt_id=["a", "b", "a"])
    with pytest.raises(ValueError, match=r"row 2: prompt_id = 'a' occurs earlier too"):
        column_features(repeated, length="chars")
    no_id = write_rows(tmp_path / "n.parquet", prompt=prompt, prompt_id=["a", None, "c"])
    with pytest.raises(ValueError, match="row 1: prompt_id is missing"):
        column_features(no_id, length="chars")
    with pytest.raises(ValueError, match=r"id_key = 'index': the data has none of the columns"):
        column_features(no_id, length="chars", id_key="index")
    (tmp_path / "rows.csv").write_text("prompt_id,level\na,1\n")
    with pytest.raises(ValueError, match="must be a .parquet file"):
        column_features(tmp_path / "rows.csv", length="chars")


def test_vector_column_reads_one_vector_per_row_also_inside_a_struct():
    from datasets import Dataset

    from mopps.features import vector_column

    table = Dataset.from_dict({"features": [[1.0, 2.0], [3.0, 4.0]],
                               "extra_info": [{"embedding": [0.5]}, {"embedding": [-1.0]}]})
    np.testing.assert_array_equal(vector_column(table, "features"), [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(vector_column(table, "extra_info.embedding"), [[0.5], [-1.0]])
    assert vector_column(table, "features").dtype == np.float64


@pytest.mark.parametrize("columns, column, match", [
    ({"x": [[1.0, 2.0]]}, "missing", r"no 'missing' column \(columns: \['x'\]\)"),
    ({"x": [{"a": [1.0]}, {"b": [1.0]}]}, "x.a", "row 1 has no 'a'"),
    ({"x": [1.0, 2.0]}, "x", r"row 0 holds the single value 1.0; .*\(for one feature: \[x\]\)"),
    ({"x": [[1.0, 2.0], [1.0, 2.0, 3.0]]}, "x", "row 1 holds 3 numbers but row 0 holds 2"),
    ({"x": [[], []]}, "x", "row 0 holds 0 numbers"),
    ({"x": [["a", "b"], ["c", "d"]]}, "x", "must hold numbers"),
])
def test_vector_column_names_the_first_bad_row(columns, column, match):
    from datasets import Dataset

    from mopps.features import vector_column

    with pytest.raises(ValueError, match=match):
        vector_column(Dataset.from_dict(columns), column)
