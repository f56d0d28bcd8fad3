"""PNG plots of a bench: accuracy vs step and vs rollouts, zero-variance share, Spearman.

Curves are means over seeds; per-step metrics are smoothed by a moving average of ``window`` steps.
matplotlib is imported lazily with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mopps.bench.summary import mean_curve


def _smoothed_step_metric(runs: list[dict], key: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([row["step"] for row in runs[0]["steps"]], dtype=np.float64)
    values = np.array([[row[key] for row in run["steps"]] for run in runs], dtype=np.float64)
    finite = np.isfinite(values)  # nan: undefined at that step (e.g. Spearman of a constant batch)
    window = max(1, min(window, values.shape[1]))
    kernel = np.ones(window)
    total = np.convolve(np.where(finite, values, 0.0).sum(axis=0), kernel, mode="valid")
    count = np.convolve(finite.sum(axis=0).astype(np.float64), kernel, mode="valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        return steps[window - 1:], np.where(count > 0, total / count, np.nan)


def write_plots(out: Path, document: dict, results: dict[str, list[dict]], window: int = 10) -> list[Path]:
    """Write ``accuracy.png`` (test and pool accuracy vs step and vs rollouts) and ``selection.png``
    (zero-variance share and Spearman on the chosen batch vs step) under ``out``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One colour per method across every panel, even where a method has no curve (DS has no Spearman).
    colors = {name: f"C{index}" for index, name in enumerate(results)}
    title = f"mopps bench, {len(document['seeds'])} seed(s), pool {document['config']['train_pool_size']} prompts"
    paths = []
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for row, (key, label) in enumerate((("test_accuracy", "test accuracy"), ("pool_accuracy", "pool accuracy"))):
        for name, runs in results.items():
            steps, rollouts, accuracy = mean_curve(runs, key)
            axes[row, 0].plot(steps, accuracy, label=name, color=colors[name])
            axes[row, 1].plot(rollouts, accuracy, label=name, color=colors[name])
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

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, runs in results.items():
        for axis, key in zip(axes, ("zero_variance_share", "spearman_selected")):
            steps, values = _smoothed_step_metric(runs, key, window)
            if np.isfinite(values).any():
                axis.plot(steps, values, label=name, color=colors[name])
    axes[0].set(xlabel="step", ylabel="zero-variance share of the trained batch")
    axes[1].set(xlabel="step", ylabel="Spearman(prediction, exact rate), chosen batch")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{title}; moving average over {window} steps")
    paths.append(out / "selection.png")
    figure.savefig(paths[-1], dpi=90)
    plt.close(figure)
    return paths
