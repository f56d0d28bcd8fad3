"""PNG plots of a bench: accuracy vs step and vs rollouts, selection and prediction metrics, calibration.

Curves are means over seeds with a shaded 90% Student-t band of the mean (``summary.curve_band``; no
band with one seed). Per-step metrics are smoothed per seed by a moving average of ``window`` steps
first. matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mopps.bench.summary import curve_band


def _smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average (S, E - window + 1) of ``values`` (S, E) per row, ignoring nan (nan where a
    window holds no finite value)."""
    finite = np.isfinite(values)
    kernel = np.ones(window)
    total = np.array([np.convolve(row, kernel, mode="valid") for row in np.where(finite, values, 0.0)])
    count = np.array([np.convolve(row, kernel, mode="valid") for row in finite.astype(np.float64)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def method_colors(names) -> dict:
    """One distinct colour per method, the same in every panel and plot (tab10, tab20 beyond 10)."""
    import matplotlib

    names = list(names)
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(index % palette.N) for index, name in enumerate(names)}


def _band(axis, x, mean, lower, upper, name: str, color) -> None:
    axis.plot(x, mean, label=name, color=color)
    axis.fill_between(x, lower, upper, color=color, alpha=0.15, linewidth=0)


def write_plots(out: Path, document: dict, results: dict[str, list[dict]], window: int = 10) -> list[Path]:
    """Write ``accuracy.png`` (test and pool accuracy vs step and vs rollouts), ``selection.png``
    (zero-variance share, and Spearman / Brier of the prediction against the exact rate over the
    candidates and Spearman over the chosen batch, vs step) and ``calibration.png`` (mean exact rate
    against mean predicted rate per bin of the prediction) under ``out``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One colour per method across every panel, even where a method has no curve (DS has no Spearman).
    colors = method_colors(results)
    seeds = len(document["seeds"])
    band = "90% t band over seeds" if seeds > 1 else "one seed, no band"
    title = f"mopps bench, {seeds} seed(s) ({band}), pool {document['config']['train_pool_size']} prompts"
    paths = []

    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for row, (key, label) in enumerate((("test_accuracy", "test accuracy"), ("pool_accuracy", "pool accuracy"))):
        for name, runs in results.items():
            steps = np.array([entry["step"] for entry in runs[0]["evals"]], dtype=np.float64)
            rollouts = np.mean([[entry["rollouts"] for entry in run["evals"]] for run in runs], axis=0)
            curve = curve_band(np.array([[entry[key] for entry in run["evals"]] for run in runs]))
            _band(axes[row, 0], steps, *curve, name, colors[name])
            _band(axes[row, 1], rollouts, *curve, name, colors[name])
        target = document["target_accuracy"] if key == "test_accuracy" else document["pool"]["target_accuracy"]
        for column, xlabel in enumerate(("step", "rollouts")):
            if target is not None:
                axes[row, column].axhline(target, color="grey", linestyle=":", linewidth=1)
            axes[row, column].set(xlabel=xlabel, ylabel=f"{label} (exact)")
            axes[row, column].grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(title)
    paths.append(out / "accuracy.png")
    figure.savefig(paths[-1], dpi=90)
    plt.close(figure)

    panels = (("zero_variance_share", "zero-variance share of the trained batch"),
              ("spearman_candidates", "Spearman(prediction, exact rate), candidates"),
              ("brier_candidates", "Brier of the prediction vs exact rate, candidates"),
              ("spearman_selected", "Spearman on the chosen batch (range-restricted)"))
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for axis, (key, label) in zip(axes.flat, panels):
        for name, runs in results.items():
            steps = np.array([entry["step"] for entry in runs[0]["steps"]], dtype=np.float64)
            values = np.array([[entry[key] for entry in run["steps"]] for run in runs], dtype=np.float64)
            width = max(1, min(window, values.shape[1]))
            smoothed = _smoothed(values, width)
            if np.isfinite(smoothed).any():
                _band(axis, steps[width - 1:], *curve_band(smoothed), name, colors[name])
        axis.set(xlabel="step", ylabel=label)
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(f"{title}; moving average over {window} steps")
    paths.append(out / "selection.png")
    figure.savefig(paths[-1], dpi=90)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for name, bins in document["calibration"].items():
        pairs = [(p, e) for p, e in zip(bins["mean_predicted"], bins["mean_exact"]) if p is not None]
        axis.plot(*zip(*pairs), marker="o", markersize=3, label=name, color=colors[name])
    axis.set(xlabel="mean predicted rate (bins of 0.1)", ylabel="mean exact rate", xlim=(0, 1), ylim=(0, 1),
             title="Calibration over the candidates, all steps and seeds")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    paths.append(out / "calibration.png")
    figure.savefig(paths[-1], dpi=90)
    plt.close(figure)
    if any(name.startswith("oracle_noise:") for name in results):
        paths.append(plot_gain_curve(out / "gain_curve.png", document, results, colors))
    return paths


def plot_gain_curve(path: Path, document: dict, results: dict[str, list[dict]], colors: dict) -> Path:
    """``gain_curve.png``: left, the paired primary gain (90% interval) against candidate Spearman,
    one line per noise kind of ``oracle_noise:<kind>:<sd>`` (sd labelled), the oracle at Spearman 1
    and every other predicting method as a point; middle, the share of trained prompts trained before
    and the pool share never rolled out per method; right, selection frequency against the exact
    rate (trained prompts / candidates per tenth of [0, 1], over the whole run)."""
    import matplotlib.pyplot as plt

    methods, regime = document["methods"], document.get("regime", {})
    figure, axes = plt.subplots(1, 3, figsize=(17, 5.2), constrained_layout=True)
    axis = axes[0]

    def point(name):
        row = methods[name]
        interval = row.get("primary_gain_ci") or [row["primary_gain"], row["primary_gain"]]
        return row["mean_spearman_candidates"], row["primary_gain"], interval

    def placed(name) -> bool:  # a gain needs Uniform in the same bench; a Spearman needs a prediction
        row = methods.get(name, {})
        return row.get("primary_gain") is not None and row.get("mean_spearman_candidates") is not None

    kinds = {}
    for name in methods:
        if name.startswith("oracle_noise:") and placed(name):
            _, kind, sd = name.split(":")
            kinds.setdefault(kind, []).append((float(sd), name))
    oracle = "oracle" if placed("oracle") else None
    for kind, members in sorted(kinds.items()):
        members.sort(reverse=True)  # largest noise (lowest Spearman) first
        names = [name for _, name in members] + ([oracle] if oracle else [])
        xs, ys, intervals = zip(*(point(name) for name in names))
        line = axis.plot(xs, ys, marker="o", label=f"noise {kind}")[0]
        axis.vlines(xs, [lo for lo, _ in intervals], [hi for _, hi in intervals], color=line.get_color(), alpha=0.5)
        for (sd, _), x, y in zip(members, xs, ys):
            axis.annotate(f"sd {sd:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    others = [name for name in methods if placed(name) and not name.startswith("oracle_noise:")
              and name != "oracle" and name in results]
    for name in others:
        x, y, (lo, hi) = point(name)
        axis.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="s", color=colors[name], label=name, capsize=3)
    axis.axhline(0.0, color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="candidate Spearman with the exact rate (mean over steps)",
             ylabel="paired gain in mean test accuracy vs Uniform", title="Gain against prediction quality")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)

    names = [name for name in results if name != "uniform"]
    axis = axes[1]
    positions = np.arange(len(names))
    retrained = [_or_nan(methods[name].get("mean_retrained_share")) for name in names]
    never = [_or_nan(regime.get(name, {}).get("never_rolled_out_share")) for name in names]
    axis.barh(positions - 0.2, retrained, height=0.4, label="trained before (share of batch)")
    axis.barh(positions + 0.2, never, height=0.4, label="pool never rolled out")
    axis.set_yticks(positions, names, fontsize=7)
    axis.set(xlabel="share", title="How often the same prompts are retrained")
    axis.grid(alpha=0.3, axis="x")
    axis.legend(fontsize=7)

    axis = axes[2]
    centres = (np.arange(10) + 0.5) / 10
    for name in names:
        trained = np.sum([np.asarray(run.get("trained_rate_hist", np.zeros((1, 10))), dtype=np.float64).sum(0)
                          for run in results[name]], axis=0)
        offered = np.sum([np.asarray(run.get("candidate_rate_hist", np.zeros((1, 10))), dtype=np.float64).sum(0)
                          for run in results[name]], axis=0)
        if offered.sum() == 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            frequency = np.where(offered > 0, trained / offered, np.nan)
        axis.plot(centres, frequency, marker=".", label=name, color=colors[name])
    axis.set(xlabel="exact success rate of the candidate", ylabel="chosen / offered",
             title="Selection frequency by exact rate (all steps)", xlim=(0, 1))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6)
    figure.suptitle(f"mopps bench, preset {document['config'].get('preset')}, {len(document['seeds'])} seed(s)")
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _or_nan(value) -> float:
    """A figure that may be missing (null), as a float that plots as nothing."""
    return float("nan") if value is None else float(value)
