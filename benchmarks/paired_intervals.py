"""How much the paired primary figure sharpens the bench, measured on bench runs already made.

    python benchmarks/paired_intervals.py runs/bench/recurring runs/bench/fresh [--trials 20000]

For each bench folder (its ``runs.json.gz``) and each method against Uniform:

1. Signal-to-noise on the same runs: the paired primary gain over its 90% half-width, against the
   steps-to-target speedup's (speedup - 1) over its half-width (``results.json`` of this version).
2. Width: the paired interval's half-width against the unpaired one a per-method summary would give
   (each method's run-mean accuracy with its own seed variance, differences of independent means).
3. Coverage, by resampling the runs: the paired differences of every method, centred on their own
   method's mean, form a pool of real paired-noise draws (all methods of all folders); a trial draws
   S of them with replacement (true gain 0) and builds the Student-t interval of their mean. The
   share of trials whose interval holds 0 is the coverage at the noise's own shape and size.

Prints a table and a summary line per folder; no timing, no randomness outside a fixed seed.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from mopps.bench.report import read_runs
from mopps.bench.summary import Resamples, _seed_matrix, run_mean_accuracy, student_t, summarize_kind


def per_seed_gains(results: dict, key: str = "test_accuracy") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{method: (paired differences (S,), method's run-mean accuracies (S,))} against Uniform."""
    steps = np.array([row["step"] for row in results["uniform"][0]["evals"]], dtype=np.float64)
    uniform = run_mean_accuracy(steps, _seed_matrix(results["uniform"], "evals", key))
    out = {}
    for name, runs in results.items():
        own = run_mean_accuracy(steps, _seed_matrix(runs, "evals", key))
        out[name] = (own - uniform, own)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--trials", type=int, default=20000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pool = []
    for folder in args.folders:
        config, seeds, results = read_runs(folder)
        block = summarize_kind(results, "test_accuracy", Resamples.of(len(seeds)))
        gains = per_seed_gains(results)
        seeds_n = len(seeds)
        t = student_t(seeds_n)
        uniform_means = gains["uniform"][1]
        print(f"\n{folder} ({config.get('preset')}, seeds {seeds})")
        print(f"{'method':<30}{'gain':>9}{'paired ±':>10}{'unpaired ±':>11}{'width ratio':>12}"
              f"{'SNR gain':>10}{'speedup':>9}{'SNR speedup':>12}{'SNR ratio':>10}")
        ratios = []
        for name, (paired, own) in gains.items():
            if name == "uniform":
                continue
            row = block["methods"][name]
            half_paired = t * paired.std(ddof=1) / math.sqrt(seeds_n)
            half_unpaired = t * math.sqrt(own.var(ddof=1) / seeds_n + uniform_means.var(ddof=1) / seeds_n)
            snr_gain = abs(paired.mean()) / half_paired if half_paired > 0 else math.inf
            speedup, interval = row["speedup_vs_uniform"], row["speedup_vs_uniform_ci"]
            snr_speedup = None
            if speedup is not None and interval and None not in interval:
                half = (interval[1] - interval[0]) / 2
                snr_speedup = abs(speedup - 1.0) / half if half > 0 else math.inf
            if snr_speedup:
                ratios.append(snr_gain / snr_speedup)
            pool.extend((paired - paired.mean()) * math.sqrt(seeds_n / (seeds_n - 1)))
            print(f"{name:<30}{paired.mean():>+9.4f}{half_paired:>10.4f}{half_unpaired:>11.4f}"
                  f"{half_paired / half_unpaired:>12.2f}{snr_gain:>10.2f}"
                  f"{'never' if speedup is None else f'{speedup:.2f}':>9}"
                  f"{'—' if snr_speedup is None else f'{snr_speedup:.2f}':>12}"
                  f"{'—' if not snr_speedup else f'{snr_gain / snr_speedup:.1f}':>10}")
        if ratios:
            print(f"median SNR ratio (paired gain / speedup) over methods with a finite speedup interval: "
                  f"{np.median(ratios):.1f}")
    pool = np.asarray(pool)
    for seeds_n in (3, 5):
        draws = rng.choice(pool, size=(args.trials, seeds_n), replace=True)
        half = student_t(seeds_n) * draws.std(axis=1, ddof=1) / math.sqrt(seeds_n)
        covered = np.abs(draws.mean(axis=1)) <= half
        print(f"\ncoverage of the paired 90% t-interval, {seeds_n} seeds, resampling {len(pool)} real paired-noise "
              f"draws: {covered.mean():.3f} ({args.trials} trials)")


if __name__ == "__main__":
    main()
