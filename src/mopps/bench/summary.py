"""From per-run curves to the bench's summary: targets, steps and rollouts to reach them, ratios.

Pure numpy. A method's curve is the mean over seeds of its evaluation rows (accuracy and cumulative
rollouts at the same steps). Crossing points are linearly interpolated between evaluations.

For one accuracy kind (``test_accuracy`` or ``pool_accuracy``):

- target = Uniform's final accuracy (mean over seeds);
- ``steps_to_target`` / ``rollouts_to_target``: where a method's mean curve first reaches the target
  (``None`` if never);
- ``speedup_vs_uniform`` = Uniform's steps to target / the method's;
- ``rollouts_vs_ds`` = rollouts the method needs to reach DS's final accuracy / the rollouts DS needs
  (``None`` when the method never gets there within the step budget, the usual case: DS spends more
  rollouts per step, so it ends higher at equal steps);
- ``rollouts_vs_ds_at_target`` = the method's rollouts to the Uniform target / DS's;
- ``steps_vs_oracle`` = the method's steps to target / the oracle's.
"""

from __future__ import annotations

import math

import numpy as np

ACCURACY_KINDS = ("test_accuracy", "pool_accuracy")


def mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, rollouts, accuracy)`` float arrays (E,), each the mean over ``runs`` (one per seed) of
    their evaluation rows; runs must share evaluation steps."""
    steps = np.array([row["step"] for row in runs[0]["evals"]], dtype=np.float64)
    rollouts = np.mean([[row["rollouts"] for row in run["evals"]] for run in runs], axis=0)
    accuracy = np.mean([[row[key] for row in run["evals"]] for run in runs], axis=0)
    return steps, rollouts, accuracy


def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """Smallest x at which the piecewise-linear curve y(x) reaches ``target``; None if it never does."""
    reached = np.flatnonzero(y >= target)
    if len(reached) == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return float(x[0])
    fraction = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(x[i - 1] + fraction * (x[i] - x[i - 1]))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator / denominator)


def step_mean(runs: list[dict], key: str) -> float | None:
    """Mean of a per-step metric over all steps of all runs, ignoring nan; None if all nan."""
    values = np.array([row[key] for run in runs for row in run["steps"]], dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def summarize_kind(results: dict[str, list[dict]], key: str) -> dict:
    """The summary block for one accuracy kind over ``results`` {method: [run per seed]}."""
    curves = {name: mean_curve(runs, key) for name, runs in results.items()}
    target = float(curves["uniform"][2][-1]) if "uniform" in curves else None
    ds_final = float(curves["ds"][2][-1]) if "ds" in curves else None

    def to_target(name: str, level: float | None, axis: int) -> float | None:
        if level is None or name not in curves:
            return None
        return first_crossing(curves[name][axis], curves[name][2], level)

    methods = {}
    for name, runs in results.items():
        steps, rollouts = to_target(name, target, 0), to_target(name, target, 1)
        finals = [run["evals"][-1][key] for run in runs]
        methods[name] = {
            "final_accuracy": float(np.mean(finals)),
            "final_accuracy_std": float(np.std(finals)),
            "steps_to_target": steps,
            "rollouts_to_target": rollouts,
            "speedup_vs_uniform": ratio(to_target("uniform", target, 0), steps),
            "rollouts_vs_ds": ratio(to_target(name, ds_final, 1), to_target("ds", ds_final, 1)),
            "rollouts_vs_ds_at_target": ratio(rollouts, to_target("ds", target, 1)),
            "steps_vs_oracle": ratio(steps, to_target("oracle", target, 0)),
            "mean_spearman_selected": step_mean(runs, "spearman_selected"),
            "mean_spearman_candidates": step_mean(runs, "spearman_candidates"),
            "mean_zero_variance_share": step_mean(runs, "zero_variance_share"),
            "total_rollouts": float(np.mean([run["evals"][-1]["rollouts"] for run in runs])),
        }
    return {"target_accuracy": target, "ds_final_accuracy": ds_final, "methods": methods}


def regime(results: dict[str, list[dict]]) -> dict:
    """Where a run sits between the two regimes, per method: rollout groups per pool prompt (mean,
    and the share of the pool never rolled out), and the self-influence of one update (mean change
    of a trained prompt's exact rate vs an untrained prompt's)."""
    report = {}
    for name, runs in results.items():
        visits = np.concatenate([np.asarray(run["visits"], dtype=np.float64) for run in runs])
        trained, untrained = step_mean(runs, "influence_trained"), step_mean(runs, "influence_untrained")
        report[name] = {
            "visits_per_prompt": float(visits.mean()),
            "never_rolled_out_share": float(np.mean(visits == 0)),
            "influence_trained": trained,
            "influence_untrained": untrained,
            "wall_time_s": float(np.mean([run["evals"][-1]["wall_time"] for run in runs])),
        }
    return report


def summarize(config: dict, seeds: list[int], results: dict[str, list[dict]]) -> dict:
    """The whole ``results.json`` document: test-accuracy block at top level, pool block under
    ``"pool"``, regime measurements under ``"regime"``. NaN never appears (JSON null instead)."""
    test = summarize_kind(results, "test_accuracy")
    pool = summarize_kind(results, "pool_accuracy")
    document = {"config": config, "seeds": list(seeds), **test, "pool": pool, "regime": regime(results)}
    return _without_nan(document)


def _without_nan(value):
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
