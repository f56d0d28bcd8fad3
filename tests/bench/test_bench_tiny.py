"""`mopps bench --preset tiny` end to end on each built-in task and on a user's own task (defined
here, loaded as module:Class): the files, the schema and the invariants of results.json."""

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest

from mopps.bench.presets import resolve
from mopps.bench.regime_map import MAP_FIGURES, map_configs
from mopps.cli import main
from mopps.testbed.methods import METHODS
from mopps.testbed.task import ExactAnswerTask

FIGURES = ("final_accuracy", "steps_to_target", "rollouts_to_target", "speedup_vs_uniform", "rollouts_vs_uniform",
           "rollouts_vs_ds", "rollouts_vs_ds_at_target", "steps_vs_oracle", "mean_spearman_selected",
           "mean_spearman_candidates", "mean_brier_candidates", "mean_logloss_candidates",
           "mean_zero_variance_share")
REGIME = ("visits_per_prompt", "never_rolled_out_share", "start_zero_variance", "influence_trained",
          "influence_untrained", "influence_matched", "influence_ratio_matched", "influence_logit_ratio_matched")


@dataclass(frozen=True)
class CountOnesTask(ExactAnswerTask):
    """A user's task, written as docs/bench.md describes: count the ones in a bit string."""

    length: int = 8
    vocab = tuple("0123456789") + ("=", "<eos>")
    eos = 11
    answer_length = 2

    @property
    def prompt_length(self):
        return self.length + 1

    def sample_problems(self, count, rng):
        return rng.integers(0, 2, size=(count, self.length))

    def encode_prompts(self, problems):
        return np.concatenate([problems, np.full((len(problems), 1), 10)], axis=1)

    def encode_answers(self, problems):
        return np.stack([problems.sum(axis=1), np.full(len(problems), self.eos)], axis=1)


TASKS = {"addition": [], "sort": ["--task", "sort"],
         "user": ["--task", "test_bench_tiny:CountOnesTask", "--warm-start-steps", "60"]}


@pytest.fixture(scope="module", params=sorted(TASKS))
def bench(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bench-{request.param}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOPPS_CACHE", str(tmp_path_factory.mktemp("cache")))
        arguments = ["bench", "--preset", "tiny", "--seeds", "0,1", "--workers", "1", "--no-progress", "--out", str(out)]
        assert main(arguments + TASKS[request.param]) == 0
    return out, json.loads((out / "results.json").read_text())


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_files_exist(bench):
    out, _ = bench
    for name in ("results.json", "curves.csv", "steps.csv", "accuracy.png", "selection.png", "calibration.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_schema_every_figure_has_an_interval(bench):
    _, document = bench
    # A task without features (the user's) cannot run contextual_taskfeatures; every other method runs.
    assert set(METHODS) - set(document["methods"]) <= {"contextual_taskfeatures"}
    assert set(document["methods"]) <= set(METHODS)
    assert document["interval"]["resamples"] > 0
    for block in (document, document["pool"]):
        assert isinstance(block["target_accuracy"], float) and len(block["target_accuracy_ci"]) == 2
        for row in block["methods"].values():
            for figure in FIGURES:
                assert row[figure] is None or isinstance(row[figure], float), figure
                interval = row[f"{figure}_ci"]
                assert interval is None or len(interval) == 2, figure
                if interval is not None and None not in interval:
                    assert interval[0] <= interval[1], figure
            share = row["faster_than_uniform_share"]
            assert 0.0 <= share <= 1.0
    assert document["config"]["preset"] == "tiny"
    assert set(document["regime"]) == set(document["methods"])
    for row in document["regime"].values():
        assert set(REGIME) <= set(row)
        assert 0.0 <= row["start_zero_variance"] <= 1.0


@pytest.mark.slow
def test_target_is_uniform_final_and_accuracies_are_probabilities(bench):
    out, document = bench
    curves = _rows(out / "curves.csv")
    uniform_finals = [float(row["test_accuracy"]) for row in curves
                      if row["method"] == "uniform" and int(row["step"]) == document["config"]["steps"]]
    assert document["target_accuracy"] == pytest.approx(np.mean(uniform_finals))
    for row in curves:
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0 and 0.0 <= float(row["pool_accuracy"]) <= 1.0


def row_has(rows: list[dict], column: str) -> bool:
    """Whether the steps.csv rows carry a value in ``column`` (methods without it leave it empty)."""
    return bool(rows) and rows[0].get(column, "") not in ("", "nan")


@pytest.mark.slow
def test_rollout_accounting(bench):
    out, document = bench
    config = document["config"]
    per_batch = config["batch_size"] * config["group_size"]
    steps = _rows(out / "steps.csv")
    for method in document["methods"]:
        for seed in document["seeds"]:
            rows = [row for row in steps if row["method"] == method and int(row["seed"]) == seed]
            batches = np.array([int(row["generation_batches"]) for row in rows])
            trained = np.array([int(row["trained_groups"]) for row in rows])
            cumulative = np.array([int(row["rollouts"]) for row in rows])
            if row_has(rows, "step_rollouts"):  # rollout allocation: rounds of their own sizes
                spent = np.array([int(row["step_rollouts"]) for row in rows])
                unused = np.array([int(row["unused_rollouts"]) for row in rows])
                # Every rollout is counted: the trained groups' n each, and the ones no group used.
                assert np.array_equal(cumulative, np.cumsum(spent)), method
                assert np.array_equal(spent, trained * config["group_size"] + unused), method
                assert np.all(trained <= config["batch_size"]) and np.all(batches >= 1)
                if method != "mopps_pilot_drop":  # the dropping variant trains fewer groups by design
                    assert np.all(trained == config["batch_size"]), method
                continue
            # Every generated rollout is counted, including DS's discarded groups.
            assert np.array_equal(cumulative, np.cumsum(batches) * per_batch), method
            if method == "ds" or method.endswith("_ds"):  # refill: DAPO, or selection-guided
                assert np.all((batches >= 1) & (batches <= config["ds_max_gen_batches"]))
                # The at-cap rule "fill" (the default) trains B groups every step.
                assert np.all(trained == config["batch_size"])
                # Kept groups are informative by construction: before the cap every trained group is;
                # only a step that hit the cap trains zero-variance groups (with advantage 0).
                shares = np.array([float(row["zero_variance_share"]) for row in rows])
                assert np.all(shares[batches < config["ds_max_gen_batches"]] == 0.0)
            else:
                assert np.all(batches == 1) and np.all(trained == config["batch_size"])


@pytest.mark.slow
def test_oracle_predicts_exactly_and_is_calibrated(bench):
    out, document = bench
    rows = [row for row in _rows(out / "steps.csv") if row["method"] == "oracle"]
    # Over all candidates the exact rates vary, so the rank correlation is defined at some step.
    spearman = np.array([float(row["spearman_candidates"]) for row in rows])
    assert np.isfinite(spearman).any()
    np.testing.assert_allclose(spearman[np.isfinite(spearman)], 1.0)
    assert document["methods"]["oracle"]["mean_spearman_candidates"] == pytest.approx(1.0)
    bins = document["calibration"]["oracle"]
    for predicted, exact in zip(bins["mean_predicted"], bins["mean_exact"]):
        assert predicted == exact or predicted == pytest.approx(exact)
    assert not {"ds", "mopps_ds", "contextual_ds"} & set(document["calibration"])


@pytest.mark.slow
def test_influence_is_measured(bench):
    out, document = bench
    rows = [row for row in _rows(out / "steps.csv") if row["influence_trained"] != ""]
    assert rows and all(row["influence_matched"] != "" for row in rows)
    assert document["regime"]["uniform"]["influence_trained"] is not None


@pytest.mark.slow
def test_answer_leads_the_report(bench):
    from mopps.bench.report import format_report

    _, document = bench
    report = format_report(document)
    assert report.startswith("Answer (test accuracy, 2 seed(s), 90% paired intervals over seeds (t); primary figure")
    assert report.index("Test accuracy (held-out prompts") < report.index("Prediction vs exact success rate") < report.index("Regime:")


def test_unknown_selector_and_task_are_named():
    with pytest.raises(SystemExit, match="nonsense"):
        main(["bench", "--preset", "tiny", "--selectors", "uniform,nonsense"])
    with pytest.raises(SystemExit, match="calibrated for"):
        main(["bench", "--preset", "transfer", "--task", "addition"])
    with pytest.raises(SystemExit, match="cannot import"):
        main(["bench", "--preset", "tiny", "--task", "no_such_module_xyz:Task"])


MAP_POINT_KEYS = {"train_pool_size", "visits_per_prompt", "target_accuracy", "target_accuracy_ci",
                  "influence_ratio_matched", "uniform_improved", "methods"}
MAP_METHOD_KEYS = {key for figure in MAP_FIGURES for key in (figure, f"{figure}_ci")} | {
    "speedup_status", "visits_per_prompt", "faster_than_uniform_share"}


@pytest.mark.slow
def test_regime_map_end_to_end(tmp_path, monkeypatch, capsys):
    # What the map does, not whether 4 tiny steps learn: whether Uniform improves at a pool size is
    # read from that point's own results.json, and the map must agree with it either way.
    monkeypatch.setenv("MOPPS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "map"
    assert main(["bench", "--preset", "tiny", "--map", "--selectors", "uniform,oracle", "--seeds", "0,1",
                 "--workers", "1", "--no-progress", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    document = json.loads((out / "map.json").read_text())
    assert (out / "map.png").stat().st_size > 0
    config = document["config"]
    assert document["seeds"] == [0, 1] and "train_pool_size" not in config
    points = document["points"]
    # One point per distinct pool size of map_configs, fewest visits per prompt first.
    pools = [c.train_pool_size for c in map_configs(resolve("tiny", regime_map=True)[0])]
    assert [point["train_pool_size"] for point in points] == pools and len(set(pools)) == len(pools) >= 2
    for point in points:
        pool = point["train_pool_size"]
        for name in ("results.json", "curves.csv", "steps.csv"):
            assert (out / f"pool-{pool}" / name).stat().st_size > 0, (pool, name)
        assert set(point) == MAP_POINT_KEYS and set(point["methods"]) == {"uniform", "oracle"}
        assert point["visits_per_prompt"] == pytest.approx(config["steps"] * config["batch_size"] / pool)
        # Uniform rolls out B prompts per step: its counted visits are the same steps x B / pool.
        assert point["methods"]["uniform"]["visits_per_prompt"] == pytest.approx(point["visits_per_prompt"])
        bench = json.loads((out / f"pool-{pool}" / "results.json").read_text())
        assert point["target_accuracy"] == bench["target_accuracy"]
        assert point["uniform_improved"] == (bench["methods"]["uniform"]["steps_to_target"] > 0.0)
        for name, row in point["methods"].items():
            assert set(row) == MAP_METHOD_KEYS, name
            speedup, status = row["speedup_vs_uniform"], row["speedup_status"]
            if not point["uniform_improved"]:
                assert status == "undefined" and speedup is None and row["speedup_vs_uniform_ci"] is None
                assert row["faster_than_uniform_share"] is None
            elif bench["methods"][name]["steps_to_target"] is None:
                assert status == "never" and speedup is None
            else:
                assert status == "measured" and speedup == bench["methods"][name]["speedup_vs_uniform"] > 0.0
                assert len(row["speedup_vs_uniform_ci"]) == 2
        if point["uniform_improved"]:
            assert point["methods"]["uniform"]["speedup_vs_uniform"] == 1.0
    assert ("undefined:" in table) == (not all(point["uniform_improved"] for point in points))


@pytest.mark.slow
def test_quick_runs_the_answering_selectors_unless_told_otherwise(tmp_path):
    from mopps.bench.presets import QUICK_METHODS

    assert main(["bench", "--preset", "tiny", "--quick", "--no-progress", "--out", str(tmp_path / "q")]) == 0
    document = json.loads((tmp_path / "q" / "results.json").read_text())
    assert list(document["methods"]) == list(QUICK_METHODS)
    assert set(QUICK_METHODS) < set(METHODS)
    assert main(["bench", "--preset", "tiny", "--quick", "--selectors", "uniform,mopps", "--no-progress",
                 "--out", str(tmp_path / "s")]) == 0
    assert list(json.loads((tmp_path / "s" / "results.json").read_text())["methods"]) == ["uniform", "mopps"]


@pytest.mark.slow
def test_quick_without_a_preset_answers_in_both_regimes(tmp_path, capsys):
    from mopps.bench.presets import QUICK_PRESETS

    # A 5-step warm start and 2 RL steps: the plumbing of both regimes, not their figures.
    assert main(["bench", "--quick", "--steps", "2", "--seeds", "0", "--selectors", "uniform,oracle",
                 "--warm-start-steps", "5", "--no-progress", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "The answer differs by regime" in printed
    for preset in QUICK_PRESETS:
        document = json.loads((tmp_path / preset / "results.json").read_text())
        assert document["config"]["preset"] == preset and list(document["methods"]) == ["uniform", "oracle"]
        assert (tmp_path / preset / "evidence" / "oracle-seed0.npz").exists()
        assert f"{preset}: Answer" in printed
    assert set(QUICK_PRESETS) == {"fresh", "recurring"}


@pytest.mark.slow
def test_gain_curve_instruments_paired_figures_and_evidence_logs(tmp_path, capsys):
    out = tmp_path / "gain"
    selectors = "uniform,oracle,oracle_noise:fresh:1,oracle_noise:visit:1,oracle_pilot:4"
    assert main(["bench", "--preset", "tiny", "--seeds", "0,1", "--selectors", selectors, "--no-progress",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Gain against prediction quality" in printed
    document = json.loads((out / "results.json").read_text())
    for name, row in document["methods"].items():
        assert len(row["primary_gain_ci"]) == 2 and row["primary_gain"] is not None, name
    assert document["methods"]["uniform"]["primary_gain"] == 0.0
    assert document["methods"]["oracle"]["primary_gain_vs_oracle"] == 1.0
    # The pilot's screening rollouts are paid for: 4 per candidate, ts_ratio x B candidates per step.
    config = document["config"]
    per_step = config["batch_size"] * config["group_size"]
    pilot = config["ts_ratio"] * config["batch_size"] * 4
    assert document["methods"]["oracle_pilot:4"]["total_rollouts"] == config["steps"] * (per_step + pilot)
    assert (out / "gain_curve.png").stat().st_size > 0
    for name in selectors.split(","):
        for seed in (0, 1):
            assert (out / "evidence" / f"{name.replace(':', '_')}-seed{seed}.npz").exists()
    assert main(["replay", str(out / "evidence" / "oracle-seed0.npz"), "--selectors", "mopps"]) == 0
