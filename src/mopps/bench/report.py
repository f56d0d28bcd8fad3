"""Writes a bench's files (``results.json``, ``curves.csv``, ``steps.csv``) and formats what it prints:
the answer first (which selector, how much faster, how sure), then the tables behind it."""

from __future__ import annotations

import csv
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
                "revisit_gap", "revisit_drift", "revisit_change", "trained_exact_mean", "trained_zero_variance")
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


def format_answer(document: dict) -> str:
    """The lead paragraph: the best selector against Uniform with its interval and how sure that is,
    the oracle's ceiling, and the methods that spend more rollouts per step (DS) by rollouts."""
    methods = document["methods"]
    seeds = len(document["seeds"])
    uniform_rollouts = methods.get("uniform", {}).get("total_rollouts")
    same_budget = [name for name, row in methods.items()
                   if name not in ("uniform", CEILING) and row["total_rollouts"] == uniform_rollouts]
    extra_budget = [name for name, row in methods.items()
                    if name not in ("uniform", CEILING) and name not in same_budget]
    how = "90% intervals over seeds (t, bootstrap standard error)" if seeds > 1 else "one seed: no intervals, a run to check the code"
    lines = [f"Answer (test accuracy, {seeds} seed(s), {how}; target = Uniform's final accuracy "
             f"{_figure(document, 'target_accuracy', 3)}):"]
    if "uniform" not in methods:
        return "\n".join(lines + ["  Uniform was not run, so there is no target to compare against."])
    if methods["uniform"]["steps_to_target"] == 0.0:
        return "\n".join(lines + ["  Uniform ended no higher than it started, so steps to its final accuracy "
                                   "compare nothing: train longer (--steps) or check the warm start."])

    def speed(name: str) -> str:
        row = methods[name]
        if row["speedup_vs_uniform"] is None:
            return f"{name} does not reach the target within the run"
        text = f"{name} is {_figure(row, 'speedup_vs_uniform', 2, 'x')} as fast as Uniform in steps to the target"
        if seeds > 1:
            sure = ("resolved: the interval excludes 1" if _resolved(row.get("speedup_vs_uniform_ci"))
                    else "not resolved from Uniform")
            text += f", faster in {100 * row['faster_than_uniform_share']:.0f}% of resamples ({sure})"
        return text

    def rank(name: str) -> float:
        value = methods[name]["speedup_vs_uniform"]
        return -1.0 if value is None else value

    ranked = sorted(same_budget, key=rank, reverse=True)
    if ranked:
        lines.append("  Best selector at Uniform's rollouts per step: " + speed(ranked[0]))
        if ranked[1:]:
            lines.append("  Then: " + "; ".join(f"{name} {_figure(methods[name], 'speedup_vs_uniform', 2, 'x')}"
                                                for name in ranked[1:]))
    if CEILING in methods:
        lines.append("  Ceiling (exact oracle, look-ups free): " + speed(CEILING))
    for name in extra_budget:
        text = f"  {speed(name)}; it spends more rollouts per step"
        if methods[name]["rollouts_vs_uniform"] is not None:
            text += f": {_figure(methods[name], 'rollouts_vs_uniform', 2, 'x')} Uniform's rollouts to the target"
        lines.append(text)
    predicted = [name for name in methods if methods[name].get("mean_spearman_candidates") is not None
                 and name != CEILING]
    if predicted:
        lines.append("  Prediction vs exact rate over the candidates (Spearman): "
                     + "; ".join(f"{name} {_figure(methods[name], 'mean_spearman_candidates')}" for name in predicted))
    return "\n".join(lines)


def format_table(document: dict, block: dict, title: str) -> str:
    """A fixed-width table of one summary block (test or pool accuracy), figures with intervals."""
    columns = (("final acc", "final_accuracy", 3, ""), ("steps→tgt", "steps_to_target", 0, ""),
               ("speedup", "speedup_vs_uniform", 2, "x"), ("ro vs U", "rollouts_vs_uniform", 2, ""),
               ("ro vs DS", "rollouts_vs_ds", 2, ""), ("ro/DS@tgt", "rollouts_vs_ds_at_target", 2, ""),
               ("st vs orc", "steps_vs_oracle", 2, ""))
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
        format_table(document, document["pool"], "Pool accuracy (training prompts, exact)"),
        format_prediction(document),
        format_regime(document),
    ])
