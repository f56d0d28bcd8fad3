"""``mopps bench --map``: where does selection pay? Every selector at several pool sizes.

The number of steps and the batch are fixed, so the pool size sets how often a prompt comes back:
visits per prompt = steps x B / pool (Uniform's rollout groups per pool prompt). Each pool size is a
full bench (its own Uniform target, intervals over the same seeds); the map collects each method's
speedup vs Uniform per point and draws it against visits per prompt with its 90% band.
The second number that places a run on the map, the self-influence ratio (matched untrained /
trained), is a property of the task and policy, not of the pool: it is reported per point.

A speedup exists only where there is time to beat. Each point says whether Uniform improved
(``uniform_improved``: its mean test accuracy first reaches its own final value after step 0) and
each method its ``speedup_status``:

- ``"measured"``: ``speedup_vs_uniform`` is a number (Uniform's steps to its final accuracy / the
  method's);
- ``"never"``: Uniform improved but the method's mean curve never reaches Uniform's final accuracy
  within the run (``speedup_vs_uniform`` null; the speedup is below Uniform's steps / the run's);
- ``"undefined"``: Uniform did not improve at this pool size (or was not run): its final accuracy is
  already met at step 0, where every method starts from the same warm start, so steps to it compare
  nothing (``speedup_vs_uniform`` null). Short runs at many visits per prompt can end here.

The table prints these as a number, ``never`` and ``undefined``; the plot draws measured points as
lines, ``never`` as a marker on the bottom edge, and marks an undefined point's visits with a grey
dashed line, never as NaN.
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
from mopps.testbed.grpo import TestbedConfig, config_dict

MAP_VISITS = (0.5, 1.5, 4.0, 10.0, 30.0)  # target visits per prompt of the points, before rounding the pool
MAP_FIGURES = ("speedup_vs_uniform", "steps_to_target", "final_accuracy", "rollouts_vs_uniform",
               "mean_spearman_candidates")


def map_configs(config: TestbedConfig, visits: tuple[float, ...] = MAP_VISITS) -> list[TestbedConfig]:
    """One config per point, pool = round(steps x B / visits) but at least ts_ratio x B (candidates must
    be distinct prompts); points that round to the same pool are kept once; fewest visits first."""
    groups = config.steps * config.batch_size
    pools = sorted({max(config.ts_ratio * config.batch_size, round(groups / target)) for target in visits}, reverse=True)
    if len(pools) < 2:
        raise ValueError(f"steps = {config.steps}, batch_size = {config.batch_size}; the map needs at least two "
                         "distinct pool sizes: give more steps")
    return [replace(config, train_pool_size=pool) for pool in pools]


def run_map(header: dict, configs: list[TestbedConfig], seeds: list[int], methods: list[str], out: Path,
            workers: int = 2, show_progress: bool = True) -> dict:
    """Run every (pool size, method, seed), write each point's bench files under ``out/pool-<size>/``
    and ``out/map.json``; return the map document (``points``: one ``map_point`` per pool size)."""
    jobs = [(config, method, seed, None) for config in configs for method in methods for seed in seeds]
    finished = iter(run_jobs(jobs, workers, show_progress))
    points = []
    for config in configs:
        results = {method: [next(finished) for _ in seeds] for method in methods}
        document = summarize({**header, **config_dict(config)}, seeds, results)
        write_outputs(out / f"pool-{config.train_pool_size}", document, results)
        points.append(map_point(config, document))
    base = config_dict(configs[0])
    base.pop("train_pool_size")
    map_document = {"config": {**header, **base}, "seeds": list(seeds), "points": points}
    out.mkdir(parents=True, exist_ok=True)
    (out / "map.json").write_text(json.dumps(map_document, indent=2) + "\n")
    return map_document


def map_point(config: TestbedConfig, document: dict) -> dict:
    """One point of the map from its pool size's bench ``document`` (``summarize``): pool size, visits
    per prompt (steps x B / pool), the target and its interval, Uniform's self-influence ratio,
    ``uniform_improved`` (None without Uniform), and per method the ``MAP_FIGURES`` with intervals,
    its own visits per prompt, its share of resamples faster than Uniform and its ``speedup_status``
    (module docstring; where that is undefined, the speedup, its interval and the share are null)."""
    uniform_steps = document["methods"].get("uniform", {}).get("steps_to_target")
    improved = None if "uniform" not in document["methods"] else uniform_steps is not None and uniform_steps > 0.0
    methods = {}
    for name, row in document["methods"].items():
        entry = {key: row[key] for figure in MAP_FIGURES for key in (figure, f"{figure}_ci")}
        if not improved:
            status = "undefined"
            entry["speedup_vs_uniform"] = entry["speedup_vs_uniform_ci"] = faster = None
        else:
            status = "never" if row["speedup_vs_uniform"] is None else "measured"
            faster = row["faster_than_uniform_share"]
        methods[name] = entry | {"speedup_status": status, "faster_than_uniform_share": faster,
                                 "visits_per_prompt": document["regime"][name]["visits_per_prompt"]}
    return {
        "train_pool_size": config.train_pool_size,
        "visits_per_prompt": config.steps * config.batch_size / config.train_pool_size,
        "target_accuracy": document["target_accuracy"],
        "target_accuracy_ci": document.get("target_accuracy_ci"),
        "influence_ratio_matched": document["regime"].get("uniform", {}).get("influence_ratio_matched"),
        "uniform_improved": improved,
        "methods": methods,
    }


def _cell(row: dict) -> str:
    if row["speedup_status"] == "undefined":
        return "undefined"
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
    statuses = {point["methods"][name]["speedup_status"] for point in points for name in methods}
    if "never" in statuses:
        lines.append("never: the method's mean curve does not reach Uniform's final accuracy within the run")
    if "undefined" in statuses:
        lines.append("undefined: Uniform ended no higher than it started at that pool size, so there is no "
                     "time to beat (train longer)")
    return "\n".join(lines)


def plot_map(out: Path, document: dict) -> Path:
    """``map.png``: speedup vs Uniform against visits per prompt (log axis), one line and 90% band per
    method over its measured points (a bound beyond the run is drawn at the plot's edge), a marker on
    the bottom edge where a method never reaches the target, and a grey dashed line at the visits of
    a point where the speedup is undefined (module docstring); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = document["points"]
    visits = np.array([point["visits_per_prompt"] for point in points])
    names = list(points[0]["methods"])
    measured = {name: [point["methods"][name]["speedup_status"] == "measured" for point in points] for name in names}
    finite = [value for point in points for row in point["methods"].values() if row["speedup_status"] == "measured"
              for value in [row["speedup_vs_uniform"], *(row["speedup_vs_uniform_ci"] or [])] if value is not None]
    top = 1.15 * max([2.0, *finite])  # an open upper bound is drawn at this edge
    figure, axis = plt.subplots(figsize=(8, 5.5), constrained_layout=True)
    axis.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    for x, point in zip(visits, points):
        if not point["uniform_improved"]:
            axis.axvline(x, color="grey", linestyle="--", linewidth=1)
            axis.text(x, 0.98 * top, "undefined: Uniform did not improve ", rotation=90, ha="right", va="top",
                      fontsize=7, color="grey")
    for name, color in method_colors(names).items():
        rows = [point["methods"][name] for point in points]
        label = name
        for run in _runs(measured[name]):
            x = visits[run]
            speedup = np.array([rows[i]["speedup_vs_uniform"] for i in run])
            axis.plot(x, speedup, marker="o", markersize=3, label=label, color=color)
            label = None
            intervals = [rows[i]["speedup_vs_uniform_ci"] for i in run]
            if all(interval is not None for interval in intervals):
                lower = np.array([0.0 if low is None else low for low, _ in intervals])
                upper = np.array([top if high is None else high for _, high in intervals])
                if len(run) > 1:
                    axis.fill_between(x, lower, upper, color=color, alpha=0.12, linewidth=0)
                else:  # a lone point has no band to fill: its interval as a bar
                    axis.vlines(x, lower, upper, color=color, alpha=0.35, linewidth=3)
        never = [x for x, row in zip(visits, rows) if row["speedup_status"] == "never"]
        if never:
            axis.plot(never, np.zeros(len(never)), linestyle="none", marker="v", markersize=6, color=color,
                      clip_on=False, label=label)
    ratios = [point["influence_ratio_matched"] for point in points if point["influence_ratio_matched"] is not None]
    influence = f"; Uniform's Δp matched/trained {min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
    axis.set(xscale="log", ylim=(0.0, top), xlabel="visits per prompt over the run (steps × B / pool)",
             ylabel="speedup vs Uniform (steps to Uniform's final test accuracy)\n▼ on the axis: never reached",
             title=f"Regime map, {len(document['seeds'])} seed(s), {document['config']['steps']} steps, "
                   f"B = {document['config']['batch_size']}{influence}")
    axis.grid(alpha=0.3, which="both")
    if axis.get_legend_handles_labels()[0]:  # none when every point is undefined
        axis.legend(fontsize=8)
    path = out / "map.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _runs(flags: list[bool]) -> list[list[int]]:
    """Indices of the maximal runs of consecutive true ``flags`` (a line is not drawn across a gap)."""
    runs: list[list[int]] = []
    for index, flag in enumerate(flags):
        if flag:
            if runs and runs[-1][-1] == index - 1:
                runs[-1].append(index)
            else:
                runs.append([index])
    return runs
