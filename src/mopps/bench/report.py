"""Writes a bench's files (``results.json``, ``curves.csv``, ``steps.csv``) and formats its tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

CURVE_COLUMNS = ("method", "seed", "step", "rollouts", "test_accuracy", "pool_accuracy", "wall_time")
STEP_COLUMNS = ("method", "seed", "step", "rollouts", "trained_groups", "generation_batches",
                "zero_variance_share", "batch_success_rate", "spearman_candidates", "spearman_selected",
                "influence_trained", "influence_untrained")


def write_outputs(out: Path, document: dict, results: dict[str, list[dict]]) -> None:
    """``results.json`` (the summary document), ``curves.csv`` (one row per evaluation of every run)
    and ``steps.csv`` (one row per step of every run) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    seeds = document["seeds"]
    for name, columns, key in (("curves.csv", CURVE_COLUMNS, "evals"), ("steps.csv", STEP_COLUMNS, "steps")):
        with open(out / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for method, runs in results.items():
                for seed, run in zip(seeds, runs):
                    for row in run[key]:
                        writer.writerow({"method": method, "seed": seed, **row})


def _number(value, digits: int = 2, suffix: str = "") -> str:
    return "never" if value is None else f"{value:.{digits}f}{suffix}"


def _count(value) -> str:
    return "never" if value is None else f"{value:,.0f}"


def format_table(document: dict, block: dict, title: str) -> str:
    """A fixed-width table of one summary block (test or pool accuracy)."""
    header = (f"{'method':<17}{'final acc':>10}{'steps→tgt':>10}{'rollouts→tgt':>14}{'speedup':>9}"
              f"{'ro vs DS':>9}{'ro/DS@tgt':>10}{'st vs orc':>10}{'ρ sel':>7}{'ρ cand':>7}{'zero-var':>9}")
    lines = [f"{title}: target = Uniform's final accuracy = {_number(block['target_accuracy'], 3)}; "
             f"DS's final accuracy = {_number(block['ds_final_accuracy'], 3)}", header, "-" * len(header)]
    for name, row in block["methods"].items():
        lines.append(
            f"{name:<17}{_number(row['final_accuracy'], 3):>10}{_number(row['steps_to_target'], 0):>10}"
            f"{_count(row['rollouts_to_target']):>14}{_number(row['speedup_vs_uniform'], 2, 'x'):>9}"
            f"{_number(row['rollouts_vs_ds'], 2):>9}{_number(row['rollouts_vs_ds_at_target'], 2):>10}"
            f"{_number(row['steps_vs_oracle'], 2):>10}"
            f"{_number(row['mean_spearman_selected'], 2):>7}{_number(row['mean_spearman_candidates'], 2):>7}"
            f"{_number(row['mean_zero_variance_share'], 2):>9}")
    return "\n".join(lines)


def format_regime(document: dict) -> str:
    """Visits per prompt and self-influence per method: where this run sits between the regimes."""
    header = f"{'method':<17}{'visits/prompt':>14}{'never seen':>11}{'Δp trained':>12}{'Δp untrained':>14}{'wall s':>8}"
    lines = ["Regime: rollout groups per pool prompt; mean change of exact success rate after one update",
             header, "-" * len(header)]
    for name, row in document["regime"].items():
        lines.append(f"{name:<17}{row['visits_per_prompt']:>14.2f}{row['never_rolled_out_share']:>11.2f}"
                     f"{_number(row['influence_trained'], 4):>12}{_number(row['influence_untrained'], 4):>14}"
                     f"{row['wall_time_s']:>8.0f}")
    return "\n".join(lines)


def format_report(document: dict) -> str:
    """Test table, pool table and regime table, as the CLI prints them."""
    return "\n\n".join([
        format_table(document, document, "Test accuracy (held-out prompts, exact)"),
        format_table(document, document["pool"], "Pool accuracy (training prompts, exact)"),
        format_regime(document),
    ])
