"""Summary arithmetic: crossings, ratios, and the runner's determinism across worker processes."""

import numpy as np
import pytest

from mopps.bench.presets import PRESETS, resolve
from mopps.bench.runner import run_all
from mopps.bench.summary import first_crossing, ratio, summarize_kind


def test_first_crossing_interpolates_and_reports_never():
    x = np.array([0.0, 10.0, 20.0])
    assert first_crossing(x, np.array([0.5, 0.6, 0.8]), 0.7) == pytest.approx(15.0)
    assert first_crossing(x, np.array([0.5, 0.6, 0.8]), 0.4) == 0.0
    assert first_crossing(x, np.array([0.5, 0.6, 0.8]), 0.9) is None
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None and ratio(3.0, 2.0) == 1.5


def _run(accuracies, rollouts_per_step):
    return {"evals": [{"step": 10 * i, "rollouts": 10 * i * rollouts_per_step, "test_accuracy": a}
                      for i, a in enumerate(accuracies)],
            "steps": [{"spearman_selected": 0.5, "spearman_candidates": 0.6, "zero_variance_share": 0.25}]}


def test_speedups_against_uniform_ds_and_oracle():
    results = {"uniform": [_run([0.5, 0.6, 0.7], 1)], "ds": [_run([0.5, 0.7, 0.8], 4)],
               "mopps": [_run([0.5, 0.7, 0.75], 1)], "oracle": [_run([0.6, 0.75, 0.8], 1)]}
    block = summarize_kind(results, "test_accuracy")
    assert block["target_accuracy"] == 0.7
    mopps = block["methods"]["mopps"]
    assert mopps["steps_to_target"] == 10.0 and mopps["speedup_vs_uniform"] == 2.0
    assert mopps["steps_vs_oracle"] == pytest.approx(10.0 / (20.0 / 3.0))
    assert mopps["rollouts_vs_ds"] is None  # never reaches DS's final 0.8
    assert block["methods"]["ds"]["rollouts_vs_ds"] == 1.0
    # DS reaches 0.7 at step 10 with 4 rollouts per step (40); mopps at step 10 with 10.
    assert mopps["rollouts_vs_ds_at_target"] == pytest.approx(10.0 / 40.0)


def test_two_workers_reproduce_one(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    config, seeds = resolve("tiny")
    serial = run_all(config, ["uniform", "mopps"], list(seeds), workers=1, show_progress=False)
    parallel = run_all(config, ["uniform", "mopps"], list(seeds), workers=2, show_progress=False)
    for method in serial:
        for a, b in zip(serial[method], parallel[method]):
            assert [row["test_accuracy"] for row in a["evals"]] == [row["test_accuracy"] for row in b["evals"]]
            assert a["visits"] == b["visits"]


def test_resolve_applies_quick_steps_and_seeds():
    config, seeds = resolve("recurring", quick=True)
    assert config.steps <= PRESETS["recurring"].config.steps and seeds == (0,)
    config, seeds = resolve("fresh", steps=7, seeds=(3, 4))
    assert config.steps == 7 and seeds == (3, 4)
    with pytest.raises(ValueError, match="preset"):
        resolve("nope")


def test_cli_preset_names_mirror_presets():
    from mopps.bench.cli import PRESET_NAMES

    assert set(PRESET_NAMES) == set(PRESETS)
