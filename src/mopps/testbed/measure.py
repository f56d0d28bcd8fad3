"""What the testbed measures against the exact success rates, as pure numpy functions.

- How good a selector's prediction is, over the candidates it ranked: Spearman, and two proper
  scores of the prediction as a forecast of one rollout's outcome (Brier and log-loss, in expectation
  under the exact rate), plus binned calibration counts.
- Self-influence that does not depend on where prompts sit: each trained prompt is matched to the
  untrained probe nearest to it in exact rate before the update, so both sides start at the same p
  (a prompt near 0 or 1 can barely move, whichever side it is on).
"""

from __future__ import annotations

import numpy as np

from mopps.core.metrics import spearman

CALIBRATION_BINS = 10  # equal-width bins of the predicted rate over [0, 1]
_CLIP = 1e-6  # rates are clipped to [_CLIP, 1 - _CLIP] before logs and logits (exact rates reach 0.0)


def prediction_scores(predicted: np.ndarray | None, exact: np.ndarray) -> dict[str, float]:
    """Scores of ``predicted`` float (m,) against the ``exact`` rates float (m,) of the same prompts.

    ``spearman``: rank correlation (nan if either side is constant); ``brier``: expected squared error
    of the prediction against one rollout's 0/1 outcome, (p̂ - p)² + p(1 - p); ``logloss``: expected
    negative log-likelihood of that outcome in nats, -p log p̂ - (1 - p) log(1 - p̂). Both are proper:
    the exact rate itself scores lowest. All nan when there is no prediction.
    """
    if predicted is None or len(exact) == 0:
        nan = float("nan")
        return {"spearman": nan, "brier": nan, "logloss": nan}
    predicted = np.clip(np.asarray(predicted, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    exact = np.asarray(exact, dtype=np.float64)
    brier = (predicted - exact) ** 2 + exact * (1.0 - exact)
    logloss = -(exact * np.log(predicted) + (1.0 - exact) * np.log1p(-predicted))
    return {"spearman": spearman(predicted, exact), "brier": float(brier.mean()), "logloss": float(logloss.mean())}


def calibration_counts(predicted: np.ndarray | None, exact: np.ndarray, bins: int = CALIBRATION_BINS) -> np.ndarray:
    """float (bins, 3): per equal-width bin of ``predicted`` (m,), the number of prompts, the sum of
    their predictions and the sum of their exact rates (sums add up over steps; divide for means).
    Zeros when there is no prediction."""
    counts = np.zeros((bins, 3))
    if predicted is None or len(exact) == 0:
        return counts
    predicted = np.asarray(predicted, dtype=np.float64)
    index = np.clip((predicted * bins).astype(np.int64), 0, bins - 1)
    for column, weights in enumerate((None, predicted, np.asarray(exact, dtype=np.float64))):
        counts[:, column] = np.bincount(index, weights=weights, minlength=bins)
    return counts


def nearest_by_rate(targets: np.ndarray, reservoir: np.ndarray) -> np.ndarray:
    """int64 (k,): for each rate in ``targets`` (k,), the position in ``reservoir`` (r,) of the rate
    nearest to it (with replacement; ties go to the lower rate)."""
    order = np.argsort(reservoir, kind="stable")
    ordered = reservoir[order]
    above = np.clip(np.searchsorted(ordered, targets), 0, len(ordered) - 1)  # first rate >= target
    below = np.maximum(above - 1, 0)
    pick = np.where(np.abs(ordered[above] - targets) < np.abs(targets - ordered[below]), above, below)
    return order[pick]


def logit(rates: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of ``rates`` (m,) clipped to [1e-6, 1 - 1e-6], float64 (m,)."""
    clipped = np.clip(np.asarray(rates, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    return np.log(clipped) - np.log1p(-clipped)
