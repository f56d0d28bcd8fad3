"""What the selector predicted for each selected group, kept until the group's rewards arrive.

A group is named by a handle: the ``uid`` verl gives it (V1 trainer, where the adapter creates the
uids) or its prompt key (legacy sampler, where uids are made after the sampler has run). Settling a
batch of groups turns predicted-vs-observed into the metrics logged under ``mopps/``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mopps.core.metrics import prediction_metrics, selection_report


class SelectionLedger:
    """Open predictions per group handle; ``metrics`` accumulates until ``pop_metrics``."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[str, float, float]] = {}
        self._settled: list[tuple[float, float, float, float]] = []  # draw, mean, successes, trials
        self._counts = {"candidates": 0, "selected": 0}

    def record(self, handles: Sequence[str], keys: Sequence[str], scores, predicted, candidates: int) -> None:
        """Remember the selected groups: ``scores`` float (k,) the ranked value (Thompson draws),
        ``predicted`` float (k,) posterior means; ``candidates``: how many prompts were offered."""
        for handle, key, score, mean in zip(handles, keys, scores, predicted, strict=True):
            self._open[str(handle)] = (key, float(score), float(mean))
        self._counts["candidates"] += int(candidates)
        self._counts["selected"] += len(handles)

    def keys_of(self) -> dict[str, str]:
        """``handle -> key`` of every open group."""
        return {handle: entry[0] for handle, entry in self._open.items()}

    def settle(self, handles: Sequence[str], successes, trials) -> None:
        """Close groups whose evidence arrived; handles not open (never selected here) are skipped."""
        for handle, success, trial in zip(handles, np.asarray(successes), np.asarray(trials), strict=True):
            entry = self._open.pop(str(handle), None)
            if entry is not None:
                self._settled.append((entry[1], entry[2], float(success), float(trial)))

    def pop_metrics(self) -> dict[str, float]:
        """Metrics since the last call; resets the accumulators.

        ``mopps/<name>`` for each name of ``mopps.core.metrics.selection_report`` (the same names as
        the TRL adapter), ``mopps/draw/<name>`` for the prediction metrics of the Thompson draws, and
        ``mopps/candidates``, ``mopps/selected``, ``mopps/observed_groups``.
        """
        metrics = {f"mopps/{name}": float(count) for name, count in self._counts.items()}
        settled = np.asarray(self._settled, dtype=np.float64).reshape(-1, 4)
        draws, means, successes, trials = settled.T
        metrics["mopps/observed_groups"] = float(len(settled))
        # The names every integration logs (predictions = posterior means at selection), then the
        # same prediction metrics for the Thompson draws that were actually ranked.
        for name, value in selection_report(means, successes, trials).items():
            metrics[f"mopps/{name}"] = value
        for name, value in prediction_metrics(draws, successes, trials).items():
            metrics[f"mopps/draw/{name}"] = value
        self._settled = []
        self._counts = {"candidates": 0, "selected": 0}
        return metrics
