"""`mopps bench --preset tiny` end to end: the files, the schema and the invariants of results.json."""

import csv
import json

import numpy as np
import pytest

from mopps.cli import main
from mopps.testbed.methods import METHODS

FIELDS = ("final_accuracy", "steps_to_target", "rollouts_to_target", "speedup_vs_uniform", "rollouts_vs_ds",
          "steps_vs_oracle", "mean_spearman_selected", "mean_zero_variance_share")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOPPS_CACHE", str(tmp_path_factory.mktemp("cache")))
        assert main(["bench", "--preset", "tiny", "--workers", "1", "--no-progress", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text())


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_files_exist(bench):
    out, _ = bench
    for name in ("results.json", "curves.csv", "steps.csv", "accuracy.png", "selection.png"):
        assert (out / name).stat().st_size > 0, name


def test_schema(bench):
    _, document = bench
    assert set(document["methods"]) == set(METHODS)
    for block in (document, document["pool"]):
        assert isinstance(block["target_accuracy"], float)
        for row in block["methods"].values():
            assert set(FIELDS) <= set(row)
            for field in FIELDS:
                assert row[field] is None or isinstance(row[field], float), field
    assert document["config"]["preset"] == "tiny"
    assert set(document["regime"]) == set(METHODS)


def test_target_is_uniform_final_and_accuracies_are_probabilities(bench):
    out, document = bench
    curves = _rows(out / "curves.csv")
    uniform_final = [float(row["test_accuracy"]) for row in curves if row["method"] == "uniform"][-1]
    assert document["target_accuracy"] == pytest.approx(uniform_final)
    for row in curves:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and 0.0 <= float(row["pool_accuracy"]) <= 1.0


def test_rollout_accounting(bench):
    out, document = bench
    config = document["config"]
    per_batch = config["batch_size"] * config["group_size"]
    steps = _rows(out / "steps.csv")
    for method in METHODS:
        rows = [row for row in steps if row["method"] == method]
        batches = np.array([int(row["generation_batches"]) for row in rows])
        trained = np.array([int(row["trained_groups"]) for row in rows])
        cumulative = np.array([int(row["rollouts"]) for row in rows])
        # Every generated rollout is counted, including DS's discarded groups.
        assert np.array_equal(cumulative, np.cumsum(batches) * per_batch), method
        assert document["methods"][method]["total_rollouts"] == cumulative[-1]
        if method == "ds":
            assert np.all((batches >= 1) & (batches <= config["ds_max_gen_batches"]))
            assert np.all(trained <= config["batch_size"])
            # Kept groups are informative by construction.
            shares = np.array([float(row["zero_variance_share"]) for row in rows if int(row["trained_groups"])])
            assert np.all(shares == 0.0)
        else:
            assert np.all(batches == 1) and np.all(trained == config["batch_size"])


def test_oracle_predicts_exactly(bench):
    out, _ = bench
    rows = [row for row in _rows(out / "steps.csv") if row["method"] == "oracle"]
    # Over all candidates the exact rates vary, so the rank correlation is defined at some step.
    spearman = np.array([float(row["spearman_candidates"]) for row in rows])
    assert np.isfinite(spearman).any()
    np.testing.assert_allclose(spearman[np.isfinite(spearman)], 1.0)


def test_unknown_selector_is_named():
    with pytest.raises(SystemExit, match="nonsense"):
        main(["bench", "--preset", "tiny", "--selectors", "uniform,nonsense"])
