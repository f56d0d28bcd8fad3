"""``mopps bench --map``: where does selection pay? Every selector at several pool sizes.

The number of steps and the batch are fixed, so the pool size sets how often a prompt comes back:
visits per prompt = steps x B / pool (Uniform's rollout groups per pool prompt). Each pool size is a
full bench (its own Uniform target, intervals over the same seeds); the map collects each method's
speedup vs Uniform per point and draws it against visits per prompt with its 90% band.
The second number that places a run on the map, the self-influence ratio (matched untrained /
trained), is a property of the task and policy, not of the pool: it is reported per point.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from mopps.bench.plots import method_colors
from mopps.bench.report import write_outputs
from mopps.bench.runner import run_jobs
from mopps.bench.summary import summarize
from mopps.testbed.grpo import GRPOConfig, config_dict

MAP_VISITS = (0.5, 1.5, 4.0, 10.0, 30.0)  # target visits per prompt of the points, before rounding the pool
MAP_FIGURES = ("speedup_vs_uniform", "steps_to_target", "final_accuracy", "rollouts_vs_uniform",
               "mean_spearman_candidates")


def map_configs(config: GRPOConfig, visits: tuple[float, ...] = MAP_VISITS) -> list[GRPOConfig]:
    """One config per point, pool = round(steps x B / visits) but at least ts_ratio x B (candidates must
    be distinct prompts); points that round to the same pool are kept once; fewest visits first."""
    groups = config.steps * config.batch_size
    pools = sorted({max(config.ts_ratio * config.batch_size, round(groups / target)) for target in visits}, reverse=True)
    if len(pools) < 2:
        raise ValueError(f"steps = {config.steps}, batch_size = {config.batch_size}; the map needs at least two "
                         "distinct pool sizes: give more steps")
    return [replace(config, train_pool_size=pool) for pool in pools]


def run_map(header: dict, configs: list[GRPOConfig], seeds: list[int], methods: list[str], out: Path,
            workers: int = 2, show_progress: bool = True) -> dict:
    """Run every (pool size, method, seed), write each point's bench files under ``out/pool-<size>/``
    and ``out/map.json``; return the map document (``points``: per pool size, visits per prompt, the
    target, Uniform's self-influence ratio, and per method the ``MAP_FIGURES`` with intervals)."""
    jobs = [(config, method, seed) for config in configs for method in methods for seed in seeds]
    finished = iter(run_jobs(jobs, workers, show_progress))
    points = []
    for config in configs:
        results = {method: [next(finished) for _ in seeds] for method in methods}
        document = summarize({**header, **config_dict(config)}, seeds, results)
        write_outputs(out / f"pool-{config.train_pool_size}", document, results)
        points.append({
            "train_pool_size": config.train_pool_size,
            "visits_per_prompt": config.steps * config.batch_size / config.train_pool_size,
            "target_accuracy": document["target_accuracy"],
            "target_accuracy_ci": document.get("target_accuracy_ci"),
            "influence_ratio_matched": document["regime"].get("uniform", {}).get("influence_ratio_matched"),
            "methods": {name: {key: row[key] for figure in MAP_FIGURES for key in (figure, f"{figure}_ci")}
                        | {"visits_per_prompt": document["regime"][name]["visits_per_prompt"],
                           "faster_than_uniform_share": row["faster_than_uniform_share"]}
                        for name, row in document["methods"].items()},
        })
    base = config_dict(configs[0])
    base.pop("train_pool_size")
    map_document = {"config": {**header, **base}, "seeds": list(seeds), "points": points}
    out.mkdir(parents=True, exist_ok=True)
    (out / "map.json").write_text(json.dumps(map_document, indent=2) + "\n")
    return map_document


def _cell(row: dict) -> str:
    value, interval = row["speedup_vs_uniform"], row["speedup_vs_uniform_ci"]
    text = "never" if value is None else f"{value:.2f}x"
    if interval is not None:
        text += " [" + ", ".join("…" if bound is None else f"{bound:.2f}" for bound in interval) + "]"
    return text


def format_map(document: dict) -> str:
    """Speedup vs Uniform (steps to Uniform's final test accuracy) per method and pool size."""
    points = document["points"]
    labels = [f"{point['visits_per_prompt']:.1f} visits" for point in points]
    methods = list(points[0]["methods"])
    cells = {name: [_cell(point["methods"][name]) for point in points] for name in methods}
    widths = [max(len(label), *(len(cell[i]) for cell in cells.values())) + 2 for i, label in enumerate(labels)]
    header = f"{'method':<22}" + "".join(f"{label:>{width}}" for label, width in zip(labels, widths))
    pools = f"{'pool size':<22}" + "".join(f"{point['train_pool_size']:>{width},}" for point, width in zip(points, widths))
    influence = f"{'Δp matched/trained':<22}" + "".join(
        f"{'—' if point['influence_ratio_matched'] is None else format(point['influence_ratio_matched'], '.2f'):>{width}}"
        for point, width in zip(points, widths))
    lines = ["Regime map: speedup vs Uniform in steps to Uniform's final test accuracy, 90% intervals "
             f"over {len(document['seeds'])} seed(s)", header, "-" * len(header), pools, influence, "-" * len(header)]
    lines += [f"{name:<22}" + "".join(f"{text:>{width}}" for text, width in zip(cells[name], widths)) for name in methods]
    return "\n".join(lines)


def plot_map(out: Path, document: dict) -> Path:
    """``map.png``: speedup vs Uniform against visits per prompt (log axis), one line and 90% band per
    method (a bound beyond the run is drawn at the plot's edge); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = document["points"]
    visits = np.array([point["visits_per_prompt"] for point in points])
    figure, axis = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    axis.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    colors = method_colors(points[0]["methods"])
    for name, color in colors.items():
        rows = [point["methods"][name] for point in points]
        speedup = np.array([np.nan if row["speedup_vs_uniform"] is None else row["speedup_vs_uniform"] for row in rows])
        axis.plot(visits, speedup, marker="o", markersize=3, label=name, color=color)
        if all(row["speedup_vs_uniform_ci"] is not None for row in rows):
            lower = np.array([0.0 if row["speedup_vs_uniform_ci"][0] is None else row["speedup_vs_uniform_ci"][0]
                              for row in rows])
            upper = np.array([np.nan if row["speedup_vs_uniform_ci"][1] is None else row["speedup_vs_uniform_ci"][1]
                              for row in rows])
            axis.fill_between(visits, lower, upper, color=color, alpha=0.12, linewidth=0)
    ratios = [point["influence_ratio_matched"] for point in points if point["influence_ratio_matched"] is not None]
    influence = f"; Uniform's Δp matched/trained {min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
    axis.set(xscale="log", xlabel="visits per prompt over the run (steps × B / pool)",
             ylabel="speedup vs Uniform (steps to Uniform's final test accuracy)",
             title=f"Regime map, {len(document['seeds'])} seed(s), {document['config']['steps']} steps, "
                   f"B = {document['config']['batch_size']}{influence}")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    path = out / "map.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
