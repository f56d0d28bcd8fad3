"""Metrics a trainer can log about a selector, as pure functions returning ``{name: float}``.

Names are stable (integrations prefix them, e.g. ``mopps/spearman``). Undefined values (a
correlation over constant inputs, a mean over nothing) are ``nan``, never an exception.
"""

from __future__ import annotations

import numpy as np

from mopps.core.validation import as_float_array, check_at_least, check_same_length


def rank_average_ties(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` (n,), tied values sharing their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = 0.5 * (starts + ends - 1) + 1.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two float arrays (n,); nan if n < 2 or either is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    dx = x - x.mean()
    dy = y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    if denominator == 0.0:
        return float("nan")
    return float((dx * dy).sum() / denominator)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); nan if n < 2 or either is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    return pearson(rank_average_ties(x), rank_average_ties(y))


def prediction_metrics(predicted, successes, trials) -> dict[str, float]:
    """How well predicted success rates matched what the rollouts showed.

    ``predicted``: float (m,), predicted success rate per prompt (posterior mean or Thompson draw);
    ``successes``, ``trials``: float (m,), the observed evidence of the same prompts.
    Keys: ``spearman`` and ``pearson`` between prediction and observed rate (positive when the
    prediction is good; the reference logs Spearman negated), ``predicted_mean``, ``brier`` (mean
    squared error of the prediction against each rollout's 0/1 outcome). The observed mean to set
    against ``predicted_mean`` is ``group_metrics``' ``success_rate_mean``.
    """
    predicted = as_float_array(predicted, "predicted")
    successes = as_float_array(successes, "successes")
    trials = as_float_array(trials, "trials")
    check_same_length(predicted=predicted, successes=successes, trials=trials)
    check_at_least(trials, 1.0, "trials")
    if len(predicted) == 0:
        nan = float("nan")
        return {"spearman": nan, "pearson": nan, "predicted_mean": nan, "brier": nan}
    observed = successes / trials
    # Per rollout (p - y)^2 averaged within a prompt is (p - s)^2 + s(1 - s) for observed rate s.
    per_prompt = (predicted - observed) ** 2 + observed * (1.0 - observed)
    return {
        "spearman": spearman(predicted, observed),
        "pearson": pearson(predicted, observed),
        "predicted_mean": float(predicted.mean()),
        "brier": float((per_prompt * trials).sum() / trials.sum()),
    }


def group_metrics(successes, trials) -> dict[str, float]:
    """Shape of one batch of groups (one group = the rollouts of one prompt).

    Keys: ``solve_all_frac`` and ``solve_none_frac`` (fractions of groups all right / all wrong),
    ``zero_variance_frac`` (their sum: groups with zero GRPO advantage), and ``success_rate_mean``,
    ``success_rate_std``, ``success_rate_min``, ``success_rate_max`` over groups
    (``success_rate_mean`` is the batch's observed success rate, averaged over prompts).
    """
    successes = as_float_array(successes, "successes")
    trials = as_float_array(trials, "trials")
    check_same_length(successes=successes, trials=trials)
    check_at_least(trials, 1.0, "trials")
    if len(successes) == 0:
        nan = float("nan")
        return {key: nan for key in ("solve_all_frac", "solve_none_frac", "zero_variance_frac",
                                     "success_rate_mean", "success_rate_std", "success_rate_min",
                                     "success_rate_max")}
    rate = successes / trials
    solve_all = float(np.mean(successes >= trials))
    solve_none = float(np.mean(successes <= 0.0))
    return {
        "solve_all_frac": solve_all,
        "solve_none_frac": solve_none,
        "zero_variance_frac": solve_all + solve_none,
        "success_rate_mean": float(rate.mean()),
        "success_rate_std": float(rate.std()),
        "success_rate_min": float(rate.min()),
        "success_rate_max": float(rate.max()),
    }


PREDICTION_KEYS = ("spearman", "pearson", "predicted_mean", "brier")
GROUP_KEYS = ("solve_all_frac", "solve_none_frac", "zero_variance_frac", "success_rate_mean",
              "success_rate_std", "success_rate_min", "success_rate_max")
SELECTION_REPORT_KEYS = PREDICTION_KEYS + GROUP_KEYS


def selection_report(predicted, successes, trials) -> dict[str, float]:
    """What every integration logs about one batch of selected prompts, under ``SELECTION_REPORT_KEYS``.

    The union of ``prediction_metrics`` (``PREDICTION_KEYS``) and ``group_metrics`` (``GROUP_KEYS``),
    so that runs on different frameworks log the same names (each adds its ``mopps/`` prefix).
    ``predicted``: float (m,), the selector's predicted success rate of each prompt at selection
    (posterior mean), or None when the selector made no prediction (the prediction keys are then nan);
    ``successes``, ``trials``: float (m,), the observed evidence of the same prompts.
    """
    successes = as_float_array(successes, "successes")
    trials = as_float_array(trials, "trials")
    groups = group_metrics(successes, trials)
    if predicted is None:
        report = {name: float("nan") for name in PREDICTION_KEYS}
    else:
        report = prediction_metrics(predicted, successes, trials)
    report.update(groups)
    return report
