"""From per-run curves to the bench's summary: targets, steps and rollouts to reach them, ratios, and
a 90% interval for every figure. Pure numpy.

A method's curve is the mean over seeds of its evaluation rows (accuracy and cumulative rollouts at
the same steps). Crossing points are linearly interpolated between evaluations. For one accuracy
kind (``test_accuracy`` or ``pool_accuracy``):

- target = Uniform's final accuracy (mean over seeds);
- ``steps_to_target`` / ``rollouts_to_target``: where a method's mean curve first reaches the target
  (``None`` if never);
- ``speedup_vs_uniform`` = Uniform's steps to target / the method's;
- ``rollouts_vs_uniform`` = the method's rollouts to target / Uniform's;
- ``rollouts_vs_ds`` = rollouts the method needs to reach DS's final accuracy / the rollouts DS needs
  (``None`` when the method never gets there within the step budget);
- ``rollouts_vs_ds_at_target`` = the method's rollouts to the Uniform target / DS's;
- ``steps_vs_oracle`` = the method's steps to target / the oracle's.

Paired figures (every method against Uniform *on the same seed*: the seed's warm start, pools and
test set are shared, so their variation cancels in the difference):

- ``primary_gain``: the primary figure. Per seed, the method's mean accuracy over the run (the area
  under its accuracy-vs-step curve, trapezoids between evaluations, divided by the steps run) minus
  Uniform's; then the mean over seeds. Accuracy points; 0 for Uniform; larger is better.
- ``gain_at_budget``: the same on the rollout axis, up to Uniform's total rollouts (a method that
  spends more rollouts per step, DS or a pilot, is integrated over fewer steps).
- ``primary_gain_vs_oracle``: ``primary_gain`` / the oracle's (the share of the ceiling's gain).
- ``rollouts_to_gain_50`` / ``rollouts_to_gain_90``: rollouts the method needs to reach Uniform's
  start accuracy plus 50% / 90% of Uniform's gain over the run, divided by the rollouts Uniform
  needs (levels on the steep part of the curve, where a crossing is well defined).

Intervals (``K_ci = [lo, hi]``, 90%): Student-t over seeds with a bootstrap standard error. One
bootstrap resample draws S seeds with replacement from the S seeds run, the same draw for every method
(seed k of every method shares pools and warm start), and recomputes every figure from the resampled
mean curves, the target included. The interval is K ± t(0.95, S - 1) · sqrt(S / (S - 1)) · sd(K over
resamples); for a figure that is a mean over seeds this is the classic Student-t interval (the
factor undoes the bootstrap's (S - 1) / S variance), and it extends that to crossings and ratios.
Plain bootstrap percentiles cover far less than 90% with 3-5 seeds (docs/bench.md). Where some
resample never reaches the level (steps to target beyond the run), the interval falls back to the
5th and 95th percentiles, and a bound that lands on a never-resample is ``None``: it lies beyond the
run. Bounds are clipped to the figure's range. The interval is ``None`` with fewer than two seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ACCURACY_KINDS = ("test_accuracy", "pool_accuracy")
RESAMPLES = 2000
INTERVAL = (0.05, 0.95)
BOOTSTRAP_SEED = 0  # the resamples are fixed, so a results file is reproducible
INTERVAL_METHOD = ("Student-t over seeds with a bootstrap standard error (paired resamples of seeds); "
                   "bootstrap percentiles where a resample never reaches the level")
NONNEGATIVE, PROBABILITY, CORRELATION, ANY = (0.0, math.inf), (0.0, 1.0), (-1.0, 1.0), (-math.inf, math.inf)
STEP_METRICS = ("spearman_selected", "spearman_candidates", "brier_candidates", "logloss_candidates",
                "zero_variance_share", "retrained_share", "revisit_gap", "revisit_drift", "revisit_change",
                "trained_exact_mean", "trained_zero_variance")  # a run without a metric gives null


def seed_weights(seeds: int, resamples: int = RESAMPLES) -> np.ndarray:
    """float (1 + resamples, seeds): row 0 weighs every seed 1/seeds (the estimate itself); row r > 0
    holds how often each seed was drawn in bootstrap resample r, divided by ``seeds``."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.integers(0, seeds, size=(resamples, seeds))
    counts = np.stack([np.bincount(row, minlength=seeds) for row in draws]) if resamples else np.zeros((0, seeds))
    return np.concatenate([np.ones((1, seeds)), counts]) / seeds


def first_crossings(x: np.ndarray, y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each row r: the smallest x at which the piecewise-linear curve y[r](x[r]) reaches
    ``target[r]``; ``inf`` if it never does. ``x`` (E,) or (R, E), ``y`` (R, E), ``target`` (R,)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.broadcast_to(np.asarray(x, dtype=np.float64), y.shape)
    target = np.asarray(target, dtype=np.float64)
    rows = np.arange(len(y))
    reached = y >= target[:, None]
    first = reached.argmax(axis=1)
    previous = np.maximum(first - 1, 0)
    y0, y1, x0, x1 = y[rows, previous], y[rows, first], x[rows, previous], x[rows, first]
    with np.errstate(invalid="ignore", divide="ignore"):  # first == 0 rows divide 0 by 0; not used
        interpolated = x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    crossing = np.where(first == 0, x[:, 0], interpolated)
    return np.where(reached.any(axis=1) & np.isfinite(target), crossing, np.inf)


def _ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator with "never" (inf) on either side giving nan."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values = numerator / denominator
    return np.where(np.isfinite(numerator) & np.isfinite(denominator) & (denominator > 0), values, np.nan)


@dataclass(frozen=True)
class Resamples:
    """Seed weights (``seed_weights``): row 0 gives each figure's estimate, rows 1: its bootstrap
    resamples; ``interval`` turns a figure's values over the rows into estimate and interval."""

    weights: np.ndarray

    @classmethod
    def of(cls, seeds: int, resamples: int = RESAMPLES) -> "Resamples":
        return cls(seed_weights(seeds, resamples if seeds > 1 else 0))

    @property
    def seeds(self) -> int:
        return self.weights.shape[1]

    def interval(self, values: np.ndarray, lower_is_worse: bool = False,
                 limits: tuple[float, float] = NONNEGATIVE) -> tuple[float | None, list | None]:
        """Estimate (row 0) and 90% interval (module docstring) of one figure; ``values`` (1 + R,),
        inf / nan meaning "never reached". Where never is the worst case it sorts past the bad end
        (``lower_is_worse``: speedups sort never below 0)."""
        point = float(values[0]) if np.isfinite(values[0]) else None
        resampled = values[1:]
        if len(resampled) == 0:
            return point, None
        never = ~np.isfinite(resampled)
        if point is not None and not never.any():
            spread = student_t(self.seeds) * math.sqrt(self.seeds / (self.seeds - 1)) * float(np.std(resampled))
            bounds = (point - spread, point + spread)
        else:
            ordered = np.where(never, -np.inf if lower_is_worse else np.inf, resampled)
            bounds = np.quantile(ordered, INTERVAL, method="inverted_cdf")
        return point, [float(np.clip(bound, *limits)) if np.isfinite(bound) else None for bound in bounds]


def student_t(seeds: int) -> float:
    """The 95th percentile of Student's t with ``seeds`` - 1 degrees of freedom (a 90% two-sided interval)."""
    from scipy.stats import t

    return float(t.ppf(INTERVAL[1], seeds - 1))


def _seed_matrix(runs: list[dict], table: str, key: str) -> np.ndarray:
    """float (S, rows): ``key`` of every row of ``table`` ("evals" or "steps") of each seed's run."""
    return np.array([[row.get(key, np.nan) for row in run[table]] for run in runs], dtype=np.float64)


def _weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(R,) weighted mean over seeds of per-seed ``values`` (S,) ignoring nan seeds (nan if all are)."""
    finite = np.isfinite(values)
    total = weights @ np.where(finite, values, 0.0)
    count = weights @ finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1.0), np.nan)


def per_seed_step_mean(runs: list[dict], key: str) -> np.ndarray:
    """float (S,): each seed's mean of a per-step metric over its steps, ignoring nan (nan if all are)."""
    values = _seed_matrix(runs, "steps", key)
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite.any(axis=1), np.where(finite, values, 0.0).sum(axis=1) / finite.sum(axis=1), np.nan)


def curve_band(per_seed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, lower, upper)`` (E,): the pointwise seed mean of ``per_seed`` (S, E) curves and its
    90% Student-t band (the band is the mean itself with one seed; nan where a seed is nan)."""
    mean = per_seed.mean(axis=0)
    seeds = len(per_seed)
    if seeds < 2:
        return mean, mean, mean
    spread = student_t(seeds) * per_seed.std(axis=0, ddof=1) / math.sqrt(seeds)
    return mean, mean - spread, mean + spread


def run_mean_accuracy(steps: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """float (S,): each seed's mean accuracy over the run, the trapezoid area under ``accuracy``
    (S, E) over ``steps`` (E,) divided by the steps covered."""
    steps = np.asarray(steps, dtype=np.float64)
    widths = np.diff(steps)
    areas = ((accuracy[:, 1:] + accuracy[:, :-1]) / 2.0) @ widths
    return areas / (steps[-1] - steps[0])


def mean_accuracy_to_budget(rollouts: np.ndarray, accuracy: np.ndarray, budget: float, points: int = 401) -> np.ndarray:
    """float (S,): each seed's mean accuracy over the rollout axis from 0 to ``budget`` (piecewise-linear
    curves ``accuracy`` (S, E) over ``rollouts`` (S, E), held at their last value past their end)."""
    grid = np.linspace(0.0, budget, points)
    return np.array([np.interp(grid, seed_rollouts, seed_accuracy).mean()
                     for seed_rollouts, seed_accuracy in zip(rollouts, accuracy)])


def _paired(results: dict[str, list[dict]], key: str, weights: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Per method, the resampled seed means (1 + R,) of the paired differences from Uniform."""
    uniform = results["uniform"]
    steps = np.array([row["step"] for row in uniform[0]["evals"]], dtype=np.float64)
    budget = float(np.mean(_seed_matrix(uniform, "evals", "rollouts")[:, -1]))
    baseline_steps = run_mean_accuracy(steps, _seed_matrix(uniform, "evals", key))
    baseline_budget = mean_accuracy_to_budget(_seed_matrix(uniform, "evals", "rollouts"),
                                              _seed_matrix(uniform, "evals", key), budget)
    paired = {}
    for name, runs in results.items():
        accuracy, rollouts = _seed_matrix(runs, "evals", key), _seed_matrix(runs, "evals", "rollouts")
        paired[name] = {
            "primary_gain": weights @ (run_mean_accuracy(steps, accuracy) - baseline_steps),
            "gain_at_budget": weights @ (mean_accuracy_to_budget(rollouts, accuracy, budget) - baseline_budget),
        }
    return paired


def summarize_kind(results: dict[str, list[dict]], key: str, resamples: Resamples) -> dict:
    """The summary block for one accuracy kind over ``results`` {method: [run per seed]}, every figure
    with its interval over the seeds (``resamples``)."""
    weights = resamples.weights
    steps = np.array([row["step"] for row in next(iter(results.values()))[0]["evals"]], dtype=np.float64)
    accuracy = {name: weights @ _seed_matrix(runs, "evals", key) for name, runs in results.items()}
    rollouts = {name: weights @ _seed_matrix(runs, "evals", "rollouts") for name, runs in results.items()}
    never = np.full(len(weights), np.nan)
    target = accuracy["uniform"][:, -1] if "uniform" in results else never
    ds_final = accuracy["ds"][:, -1] if "ds" in results else never

    def crossing(name: str, level: np.ndarray, by_rollouts: bool) -> np.ndarray:
        if name not in results:
            return np.full(len(weights), np.inf)
        return first_crossings(rollouts[name] if by_rollouts else steps, accuracy[name], level)

    def put(block: dict, figure: str, values: np.ndarray, **options) -> None:
        block[figure], block[f"{figure}_ci"] = resamples.interval(values, **options)

    uniform_steps, uniform_rollouts = crossing("uniform", target, False), crossing("uniform", target, True)
    gain_levels = {}
    if "uniform" in results:
        start = accuracy["uniform"][:, 0]
        gain_levels = {share: start + share / 100 * (target - start) for share in (50, 90)}
    uniform_gain_rollouts = {share: crossing("uniform", level, True) for share, level in gain_levels.items()}
    paired = _paired(results, key, weights) if "uniform" in results else {}
    oracle_steps = crossing("oracle", target, False)
    ds_rollouts_target, ds_rollouts_own = crossing("ds", target, True), crossing("ds", ds_final, True)
    methods = {}
    for name, runs in results.items():
        method_steps, method_rollouts = crossing(name, target, False), crossing(name, target, True)
        finals = _seed_matrix(runs, "evals", key)[:, -1]
        row: dict = {}
        put(row, "final_accuracy", weights @ finals, limits=PROBABILITY)
        row["final_accuracy_std"] = float(np.std(finals))
        put(row, "steps_to_target", method_steps)
        put(row, "rollouts_to_target", method_rollouts)
        with np.errstate(divide="ignore", invalid="ignore"):
            speedup = np.where(np.isfinite(method_steps), uniform_steps / method_steps, np.nan)
        put(row, "speedup_vs_uniform", speedup, lower_is_worse=True)
        row["faster_than_uniform_share"] = float(np.mean(np.nan_to_num(speedup[1:], nan=0.0) > 1.0)) \
            if len(weights) > 1 else None
        put(row, "rollouts_vs_uniform", _ratios(method_rollouts, uniform_rollouts))
        put(row, "rollouts_vs_ds", _ratios(crossing(name, ds_final, True), ds_rollouts_own))
        put(row, "rollouts_vs_ds_at_target", _ratios(method_rollouts, ds_rollouts_target))
        put(row, "steps_vs_oracle", _ratios(method_steps, oracle_steps))
        if name in paired:
            for figure, values in paired[name].items():
                put(row, figure, values, limits=ANY)
            if "oracle" in paired:
                put(row, "primary_gain_vs_oracle", _ratios(paired[name]["primary_gain"],
                                                           paired["oracle"]["primary_gain"]), limits=ANY)
            for share, level in gain_levels.items():
                put(row, f"rollouts_to_gain_{share}", _ratios(crossing(name, level, True), uniform_gain_rollouts[share]))
        for metric in STEP_METRICS:
            put(row, f"mean_{metric}", _weighted_mean(weights, per_seed_step_mean(runs, metric)),
                limits=CORRELATION if metric.startswith("spearman") else ANY if metric == "revisit_change"
                else NONNEGATIVE)
        row["total_rollouts"] = float(np.mean(_seed_matrix(runs, "evals", "rollouts")[:, -1]))
        methods[name] = row
    block: dict = {}
    put(block, "target_accuracy", target, limits=PROBABILITY)
    put(block, "ds_final_accuracy", ds_final, limits=PROBABILITY)
    return {**block, "methods": methods}


def regime(results: dict[str, list[dict]], resamples: Resamples) -> dict:
    """Where a run sits between the regimes, per method: rollout groups per pool prompt (mean, and the
    share of the pool never rolled out), the expected zero-variance share of a group on the pool at
    the start (from the exact rates), and the self-influence of one update (``InfluenceProbe``):
    mean change of the trained prompts' exact rate, of a fixed untrained probe's, of rate-matched
    untrained prompts', and the ratio matched / trained (on the rate and on the logit scale)."""
    report = {}
    for name, runs in results.items():
        visits = np.concatenate([np.asarray(run["visits"], dtype=np.float64) for run in runs])
        influence = {key: _weighted_mean(resamples.weights, per_seed_step_mean(runs, f"influence_{key}"))
                     for key in ("trained", "untrained", "matched", "logit_trained", "logit_matched")}
        influence["ratio_matched"] = _ratios(influence["matched"], influence["trained"])
        influence["logit_ratio_matched"] = _ratios(influence["logit_matched"], influence["logit_trained"])
        row: dict = {
            "visits_per_prompt": float(visits.mean()),
            "never_rolled_out_share": float(np.mean(visits == 0)),
            "start_zero_variance": float(np.mean(_seed_matrix(runs, "evals", "pool_zero_variance")[:, 0])),
            "wall_time_s": float(np.mean([run["evals"][-1]["wall_time"] for run in runs])),
        }
        for key, values in influence.items():
            row[f"influence_{key}"], row[f"influence_{key}_ci"] = resamples.interval(values, limits=ANY)
        report[name] = row
    return report


def calibration(results: dict[str, list[dict]]) -> dict:
    """Per method with predictions: the binned calibration of its candidates' predictions against
    their exact rates, summed over steps and seeds (``bin_edges`` (bins + 1,), ``count``,
    ``mean_predicted``, ``mean_exact`` (bins,); a mean is None in an empty bin)."""
    report = {}
    for name, runs in results.items():
        counts = np.sum([np.asarray(run["calibration"], dtype=np.float64) for run in runs], axis=0)
        if counts[:, 0].sum() == 0:
            continue
        filled = counts[:, 0] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            means = counts[:, 1:] / counts[:, :1]
        report[name] = {
            "bin_edges": np.linspace(0.0, 1.0, len(counts) + 1).tolist(),
            "count": counts[:, 0].astype(np.int64).tolist(),
            "mean_predicted": [float(v) if ok else None for v, ok in zip(means[:, 0], filled)],
            "mean_exact": [float(v) if ok else None for v, ok in zip(means[:, 1], filled)],
        }
    return report


def summarize(config: dict, seeds: list[int], results: dict[str, list[dict]]) -> dict:
    """The whole ``results.json`` document: test-accuracy block at top level, pool block under
    ``"pool"``, regime measurements under ``"regime"``, calibration under ``"calibration"``; see
    docs/bench.md for the schema. NaN never appears (JSON null instead)."""
    resamples = Resamples.of(len(seeds))
    test = summarize_kind(results, "test_accuracy", resamples)
    pool = summarize_kind(results, "pool_accuracy", resamples)
    document = {"config": config, "seeds": list(seeds),
                "interval": {"level": round(INTERVAL[1] - INTERVAL[0], 6), "method": INTERVAL_METHOD,
                             "resamples": len(resamples.weights) - 1},
                **test, "pool": pool, "regime": regime(results, resamples),
                "calibration": calibration(results)}
    return without_nan(document)


def without_nan(value):
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
