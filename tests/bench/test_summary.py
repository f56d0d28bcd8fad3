"""Summary arithmetic: crossings, ratios, intervals, presets, readable progress, the regime
map's pool sizes, and the runner's determinism across worker processes."""

import io

import numpy as np
import pytest

from mopps.bench.presets import PRESETS, resolve
from mopps.bench.regime_map import map_configs
from mopps.bench.runner import LineProgress, progress_bar, run_all
from mopps.bench.summary import Resamples, curve_band, first_crossings, seed_weights, student_t, summarize_kind
from mopps.testbed.task import SortTask


def test_first_crossing_interpolates_and_reports_never():
    x = np.array([0.0, 10.0, 20.0])
    curves = np.array([[0.5, 0.6, 0.8], [0.5, 0.6, 0.8], [0.5, 0.6, 0.8], [0.5, 0.9, 1.0]])
    rows = first_crossings(x, curves, np.array([0.7, 0.4, 0.9, 0.7]))
    assert rows[0] == pytest.approx(15.0) and rows[1] == 0.0 and rows[2] == np.inf and rows[3] == pytest.approx(5.0)
    assert first_crossings(x, curves[:1], np.array([np.nan]))[0] == np.inf  # no target: never


def _run(accuracies, rollouts_per_step, zero_variance=0.25):
    return {"evals": [{"step": 10 * i, "rollouts": 10 * i * rollouts_per_step, "test_accuracy": a}
                      for i, a in enumerate(accuracies)],
            "steps": [{"spearman_selected": 0.5, "spearman_candidates": 0.6, "brier_candidates": 0.2,
                       "logloss_candidates": 0.6, "zero_variance_share": zero_variance}]}


def test_speedups_against_uniform_ds_and_oracle():
    results = {"uniform": [_run([0.5, 0.6, 0.7], 1)], "ds": [_run([0.5, 0.7, 0.8], 4)],
               "mopps": [_run([0.5, 0.7, 0.75], 1)], "oracle": [_run([0.6, 0.75, 0.8], 1)]}
    block = summarize_kind(results, "test_accuracy", Resamples.of(1))
    assert block["target_accuracy"] == 0.7 and block["target_accuracy_ci"] is None
    mopps = block["methods"]["mopps"]
    assert mopps["steps_to_target"] == 10.0 and mopps["speedup_vs_uniform"] == 2.0
    assert mopps["rollouts_vs_uniform"] == pytest.approx(0.5)
    assert mopps["steps_vs_oracle"] == pytest.approx(10.0 / (20.0 / 3.0))
    assert mopps["rollouts_vs_ds"] is None  # never reaches DS's final 0.8
    assert block["methods"]["ds"]["rollouts_vs_ds"] == 1.0
    # DS reaches 0.7 at step 10 with 4 rollouts per step (40); mopps at step 10 with 10.
    assert mopps["rollouts_vs_ds_at_target"] == pytest.approx(10.0 / 40.0)
    assert mopps["speedup_vs_uniform_ci"] is None and mopps["faster_than_uniform_share"] is None


def test_intervals_are_student_t_for_seed_means_and_collapse_without_spread():
    # Two seeds: a method twice as fast as Uniform in one and as fast in the other.
    results = {"uniform": [_run([0.5, 0.6, 0.7], 1), _run([0.5, 0.6, 0.7], 1)],
               "mopps": [_run([0.5, 0.7, 0.7], 1, 0.1), _run([0.5, 0.6, 0.7], 1, 0.3)]}
    block = summarize_kind(results, "test_accuracy", Resamples.of(2, 4000))
    uniform, mopps = block["methods"]["uniform"], block["methods"]["mopps"]
    assert uniform["speedup_vs_uniform_ci"] == [1.0, 1.0]  # identical seeds: no spread
    # A seed mean: the classic t interval, 0.2 ± t(0.95, 1) · s / sqrt(2) with s = 0.1 · sqrt(2).
    assert mopps["mean_zero_variance_share"] == pytest.approx(0.2)
    low, high = mopps["mean_zero_variance_share_ci"]
    assert high == pytest.approx(0.2 + student_t(2) * 0.1, rel=0.05)
    assert low == 0.0  # clipped: a share is not negative
    # The mean curve of a mixed draw reaches 0.7 only at step 20, as Uniform: faster only when both
    # draws are the fast seed, a quarter of the resamples.
    assert mopps["speedup_vs_uniform"] == pytest.approx(1.0)
    assert 0.15 < mopps["faster_than_uniform_share"] < 0.35
    low, high = mopps["speedup_vs_uniform_ci"]
    assert low < 1.0 < 2.0 < high


def test_t_band_of_curves():
    mean, lower, upper = curve_band(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]]))
    assert mean.tolist() == [2.0, 1.0] and lower[1] == upper[1] == 1.0
    assert upper[0] - 2.0 == pytest.approx(student_t(3) * 2.0 / np.sqrt(3))
    assert curve_band(np.array([[0.3, 0.4]]))[1].tolist() == [0.3, 0.4]


def test_never_reaching_the_target_in_a_resample_leaves_that_bound_open():
    results = {"uniform": [_run([0.5, 0.6, 0.7], 1), _run([0.5, 0.6, 0.7], 1)],
               "mopps": [_run([0.5, 0.7, 0.8], 1), _run([0.5, 0.5, 0.5], 1)]}
    mopps = summarize_kind(results, "test_accuracy", Resamples.of(2))["methods"]["mopps"]
    assert mopps["steps_to_target_ci"][1] is None  # the slow seed alone never gets there
    assert mopps["speedup_vs_uniform_ci"][0] is None


def test_seed_weights_resample_with_replacement():
    weights = seed_weights(3, 500)
    assert weights.shape == (501, 3)
    assert np.allclose(weights.sum(axis=1), 1.0) and np.allclose(weights[0], 1 / 3)
    assert np.array_equal(weights, seed_weights(3, 500))  # fixed resamples: reproducible files


@pytest.mark.slow
def test_two_workers_reproduce_one(monkeypatch, tmp_path):
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path))
    config, seeds = resolve("tiny")
    serial = run_all(config, ["uniform", "mopps"], list(seeds), workers=1, show_progress=False)
    parallel = run_all(config, ["uniform", "mopps"], list(seeds), workers=2, show_progress=False)
    for method in serial:
        for a, b in zip(serial[method], parallel[method]):
            assert [row["test_accuracy"] for row in a["evals"]] == [row["test_accuracy"] for row in b["evals"]]
            assert a["visits"] == b["visits"]


def test_resolve_applies_task_quick_map_steps_and_seeds():
    config, seeds = resolve("recurring", quick=True)
    assert config.steps <= PRESETS["recurring"].config.steps and seeds == (0,)
    config, seeds = resolve("fresh", steps=7, seeds=(3, 4))
    assert config.steps == 7 and seeds == (3, 4)
    config, _ = resolve("recurring", task="sort")
    assert config.warm_start == PRESETS["recurring"].warm_starts["sort"] and config.train_pool_size == 640
    assert isinstance(resolve("transfer")[0].warm_start.task, SortTask)
    config, _ = resolve("tiny", task="test_bench_tiny:CountOnesTask", warm_start_steps=9)
    assert config.warm_start.steps == 9 and type(config.warm_start.task).__name__ == "CountOnesTask"
    config, seeds = resolve("recurring", regime_map=True)
    assert len(seeds) >= 2 and config.steps <= PRESETS["recurring"].config.steps
    with pytest.raises(ValueError, match="preset"):
        resolve("nope")
    with pytest.raises(ValueError, match="calibrated for"):
        resolve("transfer", task="addition")


def test_transfer_preset_meets_its_arithmetic_criteria():
    config = PRESETS["transfer"].config
    assert config.steps * config.batch_size / config.train_pool_size >= 10  # visits per prompt


def test_cli_names_mirror_presets_and_tasks():
    from mopps.bench.cli import PRESET_NAMES, TASK_NAMES
    from mopps.testbed.task import BUILTIN_TASKS

    assert set(PRESET_NAMES) == set(PRESETS) and set(TASK_NAMES) == set(BUILTIN_TASKS)


def test_map_pools_span_the_visits_and_keep_candidates_distinct():
    config, _ = resolve("recurring", regime_map=True)
    configs = map_configs(config)
    visits = [c.steps * c.batch_size / c.train_pool_size for c in configs]
    assert visits == sorted(visits) and visits[0] <= 0.6 and visits[-1] >= 25
    assert all(c.train_pool_size >= c.ts_ratio * c.batch_size for c in configs)
    with pytest.raises(ValueError, match="two"):
        map_configs(resolve("tiny", steps=1)[0], visits=(10.0, 30.0))


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_line_progress_writes_plain_lines_at_most_every_interval():
    stream, clock = io.StringIO(), _Clock()
    progress = LineProgress(total=100, stream=stream, interval=5.0, clock=clock)
    for _ in range(100):
        clock.now += 0.3  # 30 s in all: about 6 lines, not 100
        progress.update(1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert 5 <= len(lines) <= 8 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("bench: 100/100 steps (100%)")
    assert "left" in lines[0]


def test_progress_is_a_bar_only_on_a_terminal():
    assert isinstance(progress_bar(10, True, io.StringIO()), LineProgress)
    assert not isinstance(progress_bar(10, False, io.StringIO()), LineProgress)


def _full_run(accuracies):
    """A run with every field summarize reads: test and pool accuracy follow ``accuracies``."""
    influence = {"influence_trained": 0.01, "influence_untrained": 0.0, "influence_matched": 0.005,
                 "influence_logit_trained": 0.1, "influence_logit_matched": 0.05}
    run = _run(accuracies, 1)
    return {"evals": [{**row, "pool_accuracy": row["test_accuracy"], "pool_zero_variance": 0.5, "wall_time": 1.0}
                      for row in run["evals"]],
            "steps": [{**row, **influence} for row in run["steps"]],
            "visits": [1, 0], "calibration": np.zeros((10, 3))}


def test_answer_says_when_uniform_did_not_learn():
    from mopps.bench.report import format_answer
    from mopps.bench.summary import summarize

    flat = [_full_run([0.5, 0.5])]
    document = summarize({}, [0], {"uniform": flat, "mopps": flat})
    assert "Uniform ended no higher than it started" in format_answer(document)
    assert document["regime"]["mopps"]["influence_ratio_matched"] == pytest.approx(0.5)


def test_answer_names_the_best_selector_the_ceiling_and_how_sure():
    from mopps.bench.report import format_answer
    from mopps.bench.summary import summarize

    slow, fast = [0.5, 0.6, 0.7, 0.7], [0.5, 0.7, 0.75, 0.8]
    document = summarize({}, [0, 1, 2], {
        "uniform": [_full_run(slow), _full_run(slow), _full_run([0.5, 0.61, 0.7, 0.71])],
        "mopps": [_full_run(fast), _full_run(fast), _full_run([0.5, 0.69, 0.76, 0.8])],
        "oracle": [_full_run(fast)] * 3})
    answer = format_answer(document)
    assert "Best selector at Uniform's rollouts per step: mopps +" in answer
    assert "(resolved above Uniform)" in answer and "of the oracle's gain" in answer
    assert "Ceiling (exact oracle, look-ups free): oracle +" in answer


def test_map_marks_each_speedup_measured_never_or_undefined(tmp_path):
    import warnings
    from dataclasses import replace

    from mopps.bench.regime_map import format_map, map_point, plot_map
    from mopps.bench.summary import summarize

    config = resolve("tiny", steps=30)[0]
    rising, flat = [0.5, 0.6, 0.7, 0.7], [0.5, 0.5, 0.5, 0.5]
    fast, slow = [0.5, 0.7, 0.75, 0.8], [0.5, 0.55, 0.6, 0.65]
    cases = {480: ({"uniform": rising, "mopps": fast}, "measured"),  # 0.25 visits per prompt
             120: ({"uniform": rising, "mopps": slow}, "never"),
             30: ({"uniform": flat, "mopps": fast}, "undefined")}  # Uniform does not improve
    points = []
    for pool, (curves, status) in cases.items():
        results = {name: [_full_run(curve), _full_run(curve)] for name, curve in curves.items()}
        point = map_point(replace(config, train_pool_size=pool), summarize({}, [0, 1], results))
        assert point["visits_per_prompt"] == pytest.approx(config.steps * config.batch_size / pool)
        assert point["methods"]["mopps"]["speedup_status"] == status
        assert point["uniform_improved"] == (status != "undefined")
        points.append(point)
    measured, never, undefined = (point["methods"] for point in points)
    assert measured["mopps"]["speedup_vs_uniform"] == 2.0 and measured["uniform"]["speedup_status"] == "measured"
    assert never["mopps"]["speedup_vs_uniform"] is None and never["uniform"]["speedup_vs_uniform"] == 1.0
    assert all(row["speedup_vs_uniform"] is None and row["speedup_vs_uniform_ci"] is None
               and row["faster_than_uniform_share"] is None and row["speedup_status"] == "undefined"
               for row in undefined.values())
    document = {"config": {"steps": config.steps, "batch_size": config.batch_size}, "seeds": [0, 1], "points": points}
    table = format_map(document).splitlines()
    mopps_row = next(line for line in table if line.startswith("mopps"))
    assert mopps_row.split()[1:] == ["2.00x", "[2.00,", "2.00]", "never", "[…,", "…]", "undefined"]
    assert any(line.startswith("undefined: Uniform ended no higher") for line in table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN handed to matplotlib, no empty legend
        assert plot_map(tmp_path, document).stat().st_size > 0
        assert plot_map(tmp_path, {**document, "points": points[2:]}).stat().st_size > 0  # all undefined


def test_paired_gain_cancels_what_seeds_share():
    """Seeds differ by a shared offset far larger than the method's gain; pairing on the seed removes
    it, so the paired interval is tight where per-method intervals would not be."""
    offsets = [0.0, 0.15, -0.1]
    base = np.array([0.4, 0.5, 0.55, 0.6, 0.62])
    results = {"uniform": [_run(base + offset, 1) for offset in offsets],
               "mopps": [_run(base + offset + np.array([0, 0.02, 0.02, 0.02, 0.02]) + 0.001 * i, 1)
                         for i, offset in enumerate(offsets)],
               "oracle": [_run(base + offset + np.array([0, 0.04, 0.04, 0.04, 0.04]), 1) for offset in offsets],
               "ds": [_run(base + offset + np.array([0, 0.04, 0.04, 0.04, 0.04]), 2) for offset in offsets]}
    methods = summarize_kind(results, "test_accuracy", Resamples.of(3))["methods"]
    assert methods["uniform"]["primary_gain"] == 0.0 and methods["uniform"]["primary_gain_ci"] == [0.0, 0.0]
    # Trapezoids over steps 0..40: the +0.02 holds on 3.5 of 4 intervals.
    mopps = methods["mopps"]
    assert mopps["primary_gain"] == pytest.approx(0.02 * 3.5 / 4 + 0.001, abs=1e-9)
    low, high = mopps["primary_gain_ci"]
    assert 0.0 < low < mopps["primary_gain"] < high and high - low < 0.01
    assert mopps["primary_gain_vs_oracle"] == pytest.approx(mopps["primary_gain"] / (0.04 * 3.5 / 4), rel=1e-6)
    # DS spends twice the rollouts per step: at Uniform's budget it has run half the steps.
    ds = methods["ds"]
    assert ds["primary_gain"] == pytest.approx(methods["oracle"]["primary_gain"])
    assert ds["gain_at_budget"] < ds["primary_gain"]
    # Reaching half of Uniform's gain (0.4 -> 0.62: level 0.51): Uniform crosses at step 11, mopps earlier.
    assert 0.0 < mopps["rollouts_to_gain_50"] < 1.0 and methods["uniform"]["rollouts_to_gain_90"] == 1.0
