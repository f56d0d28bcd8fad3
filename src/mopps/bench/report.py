"""Writes a bench's files (``results.json``, ``curves.csv``, ``steps.csv``) and formats what it prints:
the answer first (which selector, how much faster, how sure), then the tables behind it."""

from __future__ import annotations

import csv
import math
import gzip
import io
import json
from pathlib import Path

from mopps.storage import atomic_write

CURVE_COLUMNS = ("method", "seed", "step", "rollouts", "test_accuracy", "pool_accuracy", "pool_zero_variance",
                 "wall_time")
STEP_COLUMNS = ("method", "seed", "step", "rollouts", "trained_groups", "generation_batches",
                "zero_variance_share", "batch_success_rate", "spearman_candidates", "brier_candidates",
                "logloss_candidates", "spearman_selected", "influence_trained", "influence_untrained",
                "influence_matched", "influence_logit_trained", "influence_logit_matched", "retrained_share",
                "revisit_gap", "revisit_drift", "revisit_change", "trained_exact_mean", "trained_zero_variance",
                # rollout allocation only (empty otherwise): all rollouts of the step, its pilot or
                # screening rollouts, and those in no trained group
                "step_rollouts", "pilot_rollouts", "unused_rollouts")
CEILING = "oracle"  # knows the exact rates: a ceiling, never "the best selector"


def write_outputs(out: Path, document: dict, results: dict[str, list[dict]]) -> None:
    """``results.json`` (the summary document), ``curves.csv`` (one row per evaluation of every run),
    ``steps.csv`` (one row per step of every run) and ``runs.json.gz`` (every run's whole result,
    {method: [run per seed]}, so a summary can be recomputed: ``mopps bench --resummarize``) under ``out``."""
    # Through the project's one writer: an hour of bench results is never left as a torn file.
    atomic_write(out / "results.json", lambda handle: handle.write((json.dumps(document, indent=2) + "\n").encode()))
    seeds = document["seeds"]
    for name, columns, key in (("curves.csv", CURVE_COLUMNS, "evals"), ("steps.csv", STEP_COLUMNS, "steps")):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for method, runs in results.items():
            for seed, run in zip(seeds, runs):
                for row in run[key]:
                    writer.writerow({"method": method, "seed": seed, **row})
        atomic_write(out / name, lambda handle: handle.write(text.getvalue().encode()))
    raw = gzip.compress(json.dumps({"seeds": seeds, "config": document["config"], "runs": results},
                                   default=_plain_number).encode(), mtime=0)
    atomic_write(out / RUNS_FILE, lambda handle: handle.write(raw))


RUNS_FILE = "runs.json.gz"


def read_runs(out: Path) -> tuple[dict, list[int], dict[str, list[dict]]]:
    """``(config, seeds, results)`` from the ``runs.json.gz`` that ``write_outputs`` wrote in ``out``."""
    try:
        document = json.loads(gzip.decompress(Path(out, RUNS_FILE).read_bytes()))
        return document["config"], document["seeds"], document["runs"]
    except (OSError, EOFError, ValueError, KeyError) as error:
        raise ValueError(f"{Path(out, RUNS_FILE)}: not a readable bench runs file ({error})") from None


def _plain_number(value):
    """JSON for numpy scalars and NaN-free floats left in a run's rows."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _number(value, digits: int = 2, suffix: str = "", missing: str = "never") -> str:
    return missing if value is None else f"{value:.{digits}f}{suffix}"


def _count(value) -> str:
    return "never" if value is None else f"{value:,.0f}"


def _bound(value, digits: int) -> str:
    return "…" if value is None else f"{value:.{digits}f}"


def _figure(row: dict, key: str, digits: int = 2, suffix: str = "", missing: str = "never") -> str:
    """``value [lo, hi]`` of ``row[key]`` and its interval; a missing bound lies beyond the run."""
    text = _number(row.get(key), digits, suffix, missing)
    interval = row.get(f"{key}_ci")
    if interval is None or interval == [None, None]:
        return text
    return f"{text} [{_bound(interval[0], digits)}, {_bound(interval[1], digits)}]"


def _resolved(interval, level: float = 1.0) -> bool:
    """True when the interval lies wholly above ``level`` (a missing upper bound is beyond it)."""
    return interval is not None and interval[0] is not None and interval[0] > level


def is_instrument(name: str) -> bool:
    """Whether ``name`` is a gain-curve instrument (an oracle variant; never "the best selector")."""
    return name.startswith("oracle_")


def _gain(row: dict, key: str = "primary_gain") -> str:
    """A paired gain in accuracy points, ``+0.0123 [lo, hi]``."""
    value, interval = row.get(key), row.get(f"{key}_ci")
    if value is None:
        return "—"
    text = f"{value:+.4f}"
    if interval and None not in interval:
        text += f" [{interval[0]:+.4f}, {interval[1]:+.4f}]"
    return text


def _gain_verdict(row: dict) -> str:
    interval = row.get("primary_gain_ci")
    if not interval or None in interval:
        return ""
    if interval[0] > 0:
        return " (resolved above Uniform)"
    if interval[1] < 0:
        return " (resolved below Uniform)"
    return " (not resolved from Uniform)"


def format_answer(document: dict) -> str:
    """The lead paragraph, on the primary figure (``primary_gain``: mean test accuracy over the run
    minus Uniform's on the same seed): the best selector with its paired interval and its share of
    the oracle's gain, the oracle's ceiling, the methods that spend more rollouts per step (DS, by
    their gain at Uniform's rollout budget too), and the steps-to-target speedup beside them."""
    methods = document["methods"]
    seeds = len(document["seeds"])
    uniform_rollouts = methods.get("uniform", {}).get("total_rollouts")
    # uniform_wide is Uniform's distribution drawn from more candidates (for its evidence log): a baseline.
    contenders = [name for name in methods if not name.startswith("uniform") and name != CEILING
                  and not is_instrument(name)]
    same_budget = [name for name in contenders if methods[name]["total_rollouts"] == uniform_rollouts]
    extra_budget = [name for name in contenders if name not in same_budget]
    how = ("90% paired intervals over seeds (t)" if seeds > 1 else "one seed: no intervals, a run to check the code")
    lines = [f"Answer (test accuracy, {seeds} seed(s), {how}; primary figure = mean test accuracy over the run "
             f"minus Uniform's on the same seed, in accuracy points):"]
    if "uniform" not in methods:
        return "\n".join(lines + ["  Uniform was not run, so there is nothing to pair against."])
    if methods["uniform"]["steps_to_target"] == 0.0:
        return "\n".join(lines + ["  Uniform ended no higher than it started, so gains over it compare nothing: "
                                   "train longer (--steps) or check the warm start."])

    def describe(name: str) -> str:
        row = methods[name]
        text = f"{name} {_gain(row)}{_gain_verdict(row)}"
        if name != CEILING and row.get("primary_gain_vs_oracle") is not None:
            text += f", {_figure(row, 'primary_gain_vs_oracle', 2)} of the oracle's gain"
        speed = "never reaches Uniform's final accuracy" if row["speedup_vs_uniform"] is None \
            else f"{_figure(row, 'speedup_vs_uniform', 2, 'x')} in steps to Uniform's final accuracy"
        return f"{text}; {speed}"

    def rank(name: str) -> float:
        value = methods[name].get("primary_gain")
        return -math.inf if value is None else value

    ranked = sorted(same_budget, key=rank, reverse=True)
    if ranked:
        lines.append("  Best selector at Uniform's rollouts per step: " + describe(ranked[0]))
        if ranked[1:]:
            lines.append("  Then: " + "; ".join(f"{name} {_gain(methods[name])}" for name in ranked[1:]))
    if CEILING in methods:
        lines.append("  Ceiling (exact oracle, look-ups free): " + describe(CEILING))
    for name in extra_budget:
        text = f"  {describe(name)}; it spends more rollouts per step: gain at Uniform's rollout budget " \
               f"{_gain(methods[name], 'gain_at_budget')}"
        if methods[name]["rollouts_vs_uniform"] is not None:
            text += f", {_figure(methods[name], 'rollouts_vs_uniform', 2, 'x')} Uniform's rollouts to its final accuracy"
        lines.append(text)
    instruments = [name for name in methods if is_instrument(name)]
    if instruments:
        lines.append(f"  Gain-curve instruments (not selectors): {len(instruments)} in the gain-curve table below")
    predicted = [name for name in contenders + ["uniform"] if methods[name].get("mean_spearman_candidates") is not None]
    if predicted:
        lines.append("  Prediction vs exact rate over the candidates (Spearman): "
                     + "; ".join(f"{name} {_figure(methods[name], 'mean_spearman_candidates')}" for name in predicted))
    return "\n".join(lines)


def format_gain_curve(document: dict) -> str:
    """Every method that predicts, ordered by candidate Spearman, with its paired gain, its share of
    the oracle's, and the selection diagnostics that tell selectors apart (``docs/bench.md``)."""
    methods, regime = document["methods"], document.get("regime", {})
    rows = [name for name, row in methods.items() if row.get("mean_spearman_candidates") is not None]
    rows.sort(key=lambda name: methods[name]["mean_spearman_candidates"])
    header = (f"{'method':<30}{'ρ cand':>7}{'primary gain [90%]':>28}{'of oracle':>11}{'zero-var':>10}"
              f"{'retrained':>11}{'gap':>7}{'drift':>8}{'never seen':>12}")
    lines = ["Gain against prediction quality: paired primary gain (accuracy points), its share of the oracle's, "
             "the trained batch's zero-variance share, the share of trained prompts trained before, steps since "
             "and |Δ exact rate| since their last choice, share of the pool never rolled out", header, "-" * len(header)]
    for name in rows:
        row = methods[name]
        lines.append(f"{name:<30}{_number(row['mean_spearman_candidates']):>7}{_gain(row):>28}"
                     f"{_number(row.get('primary_gain_vs_oracle'), missing='—'):>11}"
                     f"{_number(row['mean_zero_variance_share']):>10}"
                     f"{_number(row.get('mean_retrained_share'), missing='—'):>11}"
                     f"{_number(row.get('mean_revisit_gap'), 0, missing='—'):>7}"
                     f"{_number(row.get('mean_revisit_drift'), 3, missing='—'):>8}"
                     f"{_number(regime.get(name, {}).get('never_rolled_out_share'), missing='—'):>12}")
    return "\n".join(lines)


def format_table(document: dict, block: dict, title: str) -> str:
    """A fixed-width table of one summary block (test or pool accuracy), figures with intervals."""
    columns = (("gain (paired)", "primary_gain", 4, ""), ("of oracle", "primary_gain_vs_oracle", 2, ""),
               ("final acc", "final_accuracy", 3, ""), ("steps→tgt", "steps_to_target", 0, ""),
               ("speedup", "speedup_vs_uniform", 2, "x"), ("ro vs U", "rollouts_vs_uniform", 2, ""),
               ("ro vs DS", "rollouts_vs_ds", 2, ""), ("ro/DS@tgt", "rollouts_vs_ds_at_target", 2, ""),
               ("st vs orc", "steps_vs_oracle", 2, ""), ("ro→50% gain", "rollouts_to_gain_50", 2, ""),
               ("ro→90% gain", "rollouts_to_gain_90", 2, ""))
    cells = {name: [_figure(row, key, digits, suffix) for _, key, digits, suffix in columns]
             + [_count(row["rollouts_to_target"])] for name, row in block["methods"].items()}
    labels = [label for label, *_ in columns] + ["rollouts→tgt"]
    widths = [max(len(label), *(len(cell[i]) for cell in cells.values())) + 2 for i, label in enumerate(labels)]
    header = f"{'method':<22}" + "".join(f"{label:>{width}}" for label, width in zip(labels, widths))
    lines = [f"{title}: target = Uniform's final accuracy = {_figure(block, 'target_accuracy', 3)}; "
             f"DS's final accuracy = {_figure(block, 'ds_final_accuracy', 3)}", header, "-" * len(header)]
    for name, cell in cells.items():
        lines.append(f"{name:<22}" + "".join(f"{text:>{width}}" for text, width in zip(cell, widths)))
    return "\n".join(lines)


def format_prediction(document: dict) -> str:
    """Prediction quality against the exact rates, per method: over the candidates it ranked (the
    primary figures) and over the batch it chose (range-restricted: a batch chosen near 0.5 is hard
    to rank whatever the predictor)."""
    columns = (("ρ cand", "mean_spearman_candidates", 2), ("Brier cand", "mean_brier_candidates", 3),
               ("log-loss cand", "mean_logloss_candidates", 3))
    cells = {name: [_figure(row, key, digits, missing="—") for _, key, digits in columns]
             + [_number(row["mean_spearman_selected"], missing="—"), _number(row["mean_zero_variance_share"])]
             for name, row in document["methods"].items()}
    labels = [label for label, *_ in columns] + ["ρ batch (restricted)", "zero-var"]
    widths = [max(len(label), *(len(cell[i]) for cell in cells.values())) + 2 for i, label in enumerate(labels)]
    header = f"{'method':<22}" + "".join(f"{label:>{width}}" for label, width in zip(labels, widths))
    lines = ["Prediction vs exact success rate, mean over steps; — = the method makes no prediction. "
             "Brier and log-loss are expected scores of one rollout (lower is better).", header, "-" * len(header)]
    for name, cell in cells.items():
        lines.append(f"{name:<22}" + "".join(f"{text:>{width}}" for text, width in zip(cell, widths)))
    return "\n".join(lines)


def format_regime(document: dict) -> str:
    """Visits per prompt, starting zero-variance share and self-influence per method."""
    header = (f"{'method':<22}{'visits/prompt':>14}{'never seen':>11}{'start zero-var':>15}{'Δp trained':>12}"
              f"{'Δp matched':>12}{'matched/trained':>22}{'Δp fixed probe':>15}{'wall s':>8}")
    lines = ["Regime: rollout groups per pool prompt; expected zero-variance share of a group at the start; mean "
             "change of exact success rate after one update: trained prompts, untrained prompts matched to "
             "them in rate, a fixed untrained probe", header, "-" * len(header)]
    for name, row in document["regime"].items():
        lines.append(f"{name:<22}{row['visits_per_prompt']:>14.2f}{row['never_rolled_out_share']:>11.2f}"
                     f"{row['start_zero_variance']:>15.2f}"
                     f"{_number(row['influence_trained'], 4, missing='—'):>12}"
                     f"{_number(row['influence_matched'], 4, missing='—'):>12}"
                     f"{_figure(row, 'influence_ratio_matched', missing='—'):>22}"
                     f"{_number(row['influence_untrained'], 4, missing='—'):>15}"
                     f"{row['wall_time_s']:>8.0f}")
    return "\n".join(lines)


def format_report(document: dict) -> str:
    """The answer, then the test, pool, prediction and regime tables, as the CLI prints them."""
    return "\n\n".join([
        format_answer(document),
        format_table(document, document, "Test accuracy (held-out prompts, exact)"),
        format_gain_curve(document),
        format_table(document, document["pool"], "Pool accuracy (training prompts, exact)"),
        format_prediction(document),
        format_regime(document),
    ])
