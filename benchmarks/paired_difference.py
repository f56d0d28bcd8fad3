"""Paired differences between one method and every other in a finished bench, on both axes.

For each method M of the bench folder DIR (its ``runs.json.gz``), per seed: the reference method's
figure minus M's, for the primary gain (mean test accuracy over the run) and the gain at Uniform's
rollout budget (mean test accuracy over the rollout axis up to Uniform's total rollouts), with a 90%
Student-t interval over seeds; a difference whose interval lies above 0 is a resolved win of the
reference. Also each method's rollouts per step (all rollouts of the run / steps) and, where the
run logged them, its pilot and unused rollouts per step (``mopps.loop.Allocation`` methods).

Run: ``python benchmarks/paired_difference.py runs/bench/recurring --against mopps_pilot``
(seconds; reads the runs, trains nothing).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from mopps.bench.report import read_runs
from mopps.bench.summary import _seed_matrix, mean_accuracy_to_budget, per_seed_step_mean, run_mean_accuracy, student_t


def per_seed_figures(results: dict[str, list[dict]], key: str = "test_accuracy") -> dict[str, dict[str, np.ndarray]]:
    """Per method: ``primary`` and ``budget`` (S,), each seed's mean accuracy over the run and over the
    rollout axis up to Uniform's mean total rollouts."""
    uniform = results["uniform"]
    steps = np.array([row["step"] for row in uniform[0]["evals"]], dtype=np.float64)
    budget = float(np.mean(_seed_matrix(uniform, "evals", "rollouts")[:, -1]))
    figures = {}
    for name, runs in results.items():
        accuracy, rollouts = _seed_matrix(runs, "evals", key), _seed_matrix(runs, "evals", "rollouts")
        figures[name] = {"primary": run_mean_accuracy(steps, accuracy),
                         "budget": mean_accuracy_to_budget(rollouts, accuracy, budget)}
    return figures


def interval(differences: np.ndarray) -> str:
    """``+0.0012 [-0.0003, +0.0027]``: the mean of per-seed ``differences`` and its 90% t interval."""
    mean = float(differences.mean())
    if len(differences) < 2:
        return f"{mean:+.4f}"
    spread = student_t(len(differences)) * float(differences.std(ddof=1)) / math.sqrt(len(differences))
    return f"{mean:+.4f} [{mean - spread:+.4f}, {mean + spread:+.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a bench output folder (holds runs.json.gz)")
    parser.add_argument("--against", default="mopps_pilot", help="the reference method (default mopps_pilot)")
    args = parser.parse_args()
    config, seeds, results = read_runs(args.folder)
    if args.against not in results:
        raise SystemExit(f"--against {args.against!r}: the bench ran {sorted(results)}")
    figures = per_seed_figures(results)
    reference = figures[args.against]
    print(f"{args.folder}: seeds {seeds}, {config.get('steps')} steps; paired difference {args.against} minus "
          "each method (90% t interval over seeds); rollouts per step")
    print(f"{'method':<24} {'primary gain':>30} {'at Uniform budget':>30} {'rollouts/step':>14} "
          f"{'pilot/step':>11} {'unused/step':>12}")
    for name, runs in results.items():
        per_step = np.mean([run["steps"][-1]["rollouts"] / len(run["steps"]) for run in runs])
        pilot = per_seed_step_mean(runs, "pilot_rollouts").mean()
        unused = per_seed_step_mean(runs, "unused_rollouts").mean()
        same = name == args.against
        print(f"{name:<24} {'—' if same else interval(reference['primary'] - figures[name]['primary']):>30} "
              f"{'—' if same else interval(reference['budget'] - figures[name]['budget']):>30} {per_step:>14.1f} "
              f"{'' if np.isnan(pilot) else f'{pilot:.1f}':>11} {'' if np.isnan(unused) else f'{unused:.1f}':>12}")


if __name__ == "__main__":
    main()
