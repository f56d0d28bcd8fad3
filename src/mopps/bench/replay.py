"""Offline replay: feed a logged evidence stream (``mopps.loop.EvidenceLog``) to any selector and score
its *prediction* in seconds, without training anything.

At every logged selection step the selector is told of the policy updates the run had made by then
(the log's ``tick``), ranks the logged candidates and chooses as many as the run chose (its choice changes nothing: the log goes on as it was), then learns from the logged
evidence of the prompts the run rolled out at that step. Scores, averaged over steps:

With exact rates (testbed logs): over every candidate, ``spearman`` (rank correlation with the exact
rate), ``brier`` and ``logloss`` (expected scores of the prediction as a forecast of one rollout,
as the bench computes them: ``mopps.testbed.measure.prediction_scores``), and ``zero_variance``:
the expected zero-variance share, p^n + (1 - p)^n with exact p, of the batch the selector would
have chosen.

Without exact rates (logs written by TRL or verl): over the candidates the run rolled out at that
step, against what their rollouts showed (the selector has seen evidence up to the step before, so
this is its next visit): ``spearman`` with the observed rate, ``brier`` and ``logloss`` per rollout
(successes s of trials t: (s (1 - p̂)^2 + (t - s) p̂^2) / t and -(s log p̂ + (t - s) log(1 - p̂)) / t),
and ``zero_variance``: the observed zero-variance share of the rolled-out groups the selector would
also have chosen (a subset biased toward the run's own choices; compare selectors, not runs).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mopps.core.metrics import spearman
from mopps.core.selection import mixed_group_probability
from mopps.loop.evidence_log import EvidenceStream
from mopps.selectors import Selector
from mopps.testbed.measure import prediction_scores
from mopps.testbed.methods import build_method

# Built-in selectors that need no exact rates, by their bench names.
REPLAY_SELECTORS = ("uniform", "mopps", "mopps_lambda0.5", "mopps_auto", "mopps_threshold", "mopps_informative",
                    "mopps_perturbed", "history", "contextual", "contextual_informative", "contextual_perturbed")
SCORES = ("spearman", "brier", "logloss", "zero_variance")
_CLIP = 1e-6


def build_replay_selector(name: str, seed: int, group_size: int) -> Selector:
    """The selector the bench calls ``name`` (one of ``REPLAY_SELECTORS``), seeded with ``seed``."""
    if name not in REPLAY_SELECTORS:
        raise ValueError(f"selector = {name!r}; replay runs {REPLAY_SELECTORS} (oracles need the policy)")

    def no_exact_rates(ids):
        raise ValueError("a replayed selector has no exact rates")

    return build_method(name, seed, 1, 1, no_exact_rates, group_size=group_size).selector


def _observed_scores(predicted: np.ndarray, successes: np.ndarray, trials: np.ndarray) -> dict[str, float]:
    """Scores of ``predicted`` (m,) against observed ``successes`` of ``trials`` (m,) rollouts."""
    if len(predicted) == 0:
        return {"spearman": float("nan"), "brier": float("nan"), "logloss": float("nan")}
    p = np.clip(predicted, _CLIP, 1.0 - _CLIP)
    failures = trials - successes
    brier = (successes * (1.0 - p) ** 2 + failures * p**2).sum() / trials.sum()
    logloss = -(successes * np.log(p) + failures * np.log1p(-p)).sum() / trials.sum()
    return {"spearman": spearman(p, successes / trials), "brier": float(brier), "logloss": float(logloss)}


def replay(stream: EvidenceStream, selector: Selector, features: tuple[Any, np.ndarray] | None = None) -> dict[str, Any]:
    """Replay ``stream`` through ``selector`` (a fresh one); ``features``: ``(ids, X)`` handed to a
    selector that takes them before the first step. Returns ``{"scores": {score: mean over steps},
    "per_step": {score: float (steps,)}, "steps": int, "exact": bool, "seconds": float}``."""
    start = time.perf_counter()
    if features is not None and hasattr(selector, "add_features"):
        selector.add_features(*features)
    group_size = int(stream.meta.get("group_size", 8))
    candidates, outcomes, exact = (stream.tables[name] for name in ("candidates", "outcomes", "exact"))
    with_exact = stream.has_exact()
    steps = stream.steps()
    # Each table sorted by step once; a step's rows are then one slice.
    slices = {name: _step_slices(table["step"], steps) for name, table in
              (("candidates", candidates), ("outcomes", outcomes), ("exact", exact))}
    # Evidence reaches the selector when it reached the run's loop (a host may choose several
    # batches before it observes them), not at the step that chose it.
    arrived = _step_slices(outcomes["observed_step"], steps)
    per_step = {score: np.full(len(steps), np.nan) for score in SCORES}
    for index, step in enumerate(steps):
        rows = slices["candidates"][index]
        ids = candidates["prompt_id"][rows]
        chosen_in_log = candidates["chosen"][rows]
        k = int(chosen_in_log.sum())
        outcome_rows = slices["outcomes"][index]
        # The run's policy ticks between steps reach the replayed selector too (what ages, ages alike).
        behind = int(candidates["tick"][rows].max()) - selector.tick if len(rows) else 0
        if behind > 0:
            selector.policy_updated(behind)
        if k > 0:
            selection = selector.select(ids, k)
            predicted = selection.predicted_rate
            if predicted is not None:
                scores = _step_scores(predicted, selection.index, ids, rows, with_exact, group_size,
                                      exact, slices["exact"][index], outcomes, outcome_rows)
                for score, value in scores.items():
                    per_step[score][index] = value
        learned = arrived[index]
        if len(learned):
            judged = outcomes["trials"][learned] > 0
            if judged.any():
                selector.update(outcomes["prompt_id"][learned][judged],
                                outcomes["successes"][learned][judged].astype(np.float64),
                                outcomes["trials"][learned][judged].astype(np.float64))
    means = {score: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
             for score, values in per_step.items()}
    return {"scores": means, "per_step": per_step, "steps": len(steps), "exact": with_exact,
            "seconds": time.perf_counter() - start}


def _step_slices(step_column: np.ndarray, steps: np.ndarray) -> list[np.ndarray]:
    """For each step of ``steps``, the row positions of ``step_column`` that hold it."""
    order = np.argsort(step_column, kind="stable")
    lower = np.searchsorted(step_column[order], steps, side="left")
    upper = np.searchsorted(step_column[order], steps, side="right")
    return [order[a:b] for a, b in zip(lower, upper)]


def _step_scores(predicted, chosen_index, ids, rows, with_exact, group_size, exact, exact_rows, outcomes,
                 outcome_rows) -> dict[str, float]:
    """The step's scores (module docstring) of ``predicted`` (n,) over the step's candidates ``ids``
    (n,), of which the selector chose ``chosen_index`` (k,): against the exact rates where the log has
    them, else against the outcomes of the prompts the run chose at this step."""
    if with_exact:
        rates = _aligned(exact["prompt_id"][exact_rows], exact["exact_rate"][exact_rows], ids)
        known = np.isfinite(rates)
        scores = prediction_scores(predicted[known], rates[known].astype(np.float64))
        chosen_rates = rates[chosen_index]
        chosen_rates = chosen_rates[np.isfinite(chosen_rates)].astype(np.float64)
        scores["zero_variance"] = float(np.mean(1.0 - mixed_group_probability(chosen_rates, group_size))) \
            if len(chosen_rates) else float("nan")
        return scores
    successes = _summed(outcomes["prompt_id"][outcome_rows], outcomes["successes"][outcome_rows], ids)
    trials = _summed(outcomes["prompt_id"][outcome_rows], outcomes["trials"][outcome_rows], ids)
    seen = np.isfinite(trials) & (trials > 0)
    scores = _observed_scores(predicted[seen], successes[seen].astype(np.float64), trials[seen].astype(np.float64))
    mine = np.zeros(len(ids), dtype=bool)
    mine[chosen_index] = True
    both = mine & seen
    equal = (successes[both] == 0) | (successes[both] == trials[both])
    scores["zero_variance"] = float(equal.mean()) if both.any() else float("nan")
    return scores


def _summed(keys: np.ndarray, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float (len(ids),): the sum of ``values`` over the rows of each id in ``keys`` (one group
    observed in two calls has two rows); NaN for an id without rows."""
    result = np.zeros(len(ids))
    if len(keys) == 0:
        return np.full(len(ids), np.nan)
    order = np.argsort(ids, kind="stable")
    position = np.clip(np.searchsorted(ids[order], keys), 0, len(ids) - 1)
    found = ids[order][position] == keys
    np.add.at(result, order[position][found], values[found])
    present = np.zeros(len(ids), dtype=bool)
    present[order[position][found]] = True
    return np.where(present, result, np.nan)


def _aligned(keys: np.ndarray, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float (len(ids),): ``values`` of each id by ``keys`` (NaN where absent)."""
    result = np.full(len(ids), np.nan)
    if len(keys) == 0:
        return result
    order = np.argsort(keys, kind="stable")
    position = np.clip(np.searchsorted(keys[order], ids), 0, len(keys) - 1)
    found = keys[order][position] == ids
    result[found] = values[order][position][found]
    return result


def format_replay(rows: list[tuple[str, str, dict]]) -> str:
    """A table of ``(log name, selector name, replay result)`` rows."""
    header = f"{'log':<34}{'selector':<24}{'ρ':>7}{'Brier':>8}{'log-loss':>10}{'zero-var':>10}{'steps':>7}{'s':>6}"
    lines = [header, "-" * len(header)]
    for log_name, name, result in rows:
        scores = result["scores"]
        lines.append(f"{log_name:<34}{name:<24}{scores['spearman']:>7.3f}{scores['brier']:>8.4f}"
                     f"{scores['logloss']:>10.4f}{scores['zero_variance']:>10.3f}{result['steps']:>7}"
                     f"{result['seconds']:>6.1f}")
    return "\n".join(lines)
