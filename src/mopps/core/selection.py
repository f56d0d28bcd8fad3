"""Selection rules: choose ``k`` of ``n`` candidates from per-candidate scores. Pure functions.

Every rule returns int64 positions (k,) into the candidate array, with no repeats. Rules that need
randomness take an explicit ``numpy.random.Generator``. Scores are usually success rates in [0, 1]:
Thompson draws (MoPPS), posterior means (the greedy ablation) or exact rates (the oracle).

Exploration floor (``exploration_slots`` + ``with_exploration``, the ``explore`` option of the
learning selectors): of each batch's k, the rule chooses k - e and e go uniformly at random to the
candidates it left out, e = explore * k rounded at random (expected share exactly ``explore``). A
candidate the rule would never choose (a prompt believed at 0 or 1) is then chosen with probability
e / (n - k + e) per batch in which it is a candidate, at least explore * k / (n - k + ceil(explore * k))
on average over the rounding. Chosen over an epsilon-mix of each slot because
an explored slot is never spent on a prompt the rule took anyway, the share does not vary from batch
to batch beyond one slot, and the bound above is exact; it costs one draw of e of the rest.
"""

from __future__ import annotations

import numpy as np


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest values, ordered by value then position (deterministic).

    Ties at the cut are resolved toward the earliest positions, independent of numpy's partition
    internals. O(n) plus a sort of the k chosen.
    """
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < len(values):
        # Partition at k: the first k are the k smallest and entry k is the next one in order. Only a
        # tie across the cut (rare for continuous draws) needs the slower position-ordered pass.
        partition = np.argpartition(values, k)
        chosen = partition[:k]
        cut = values[chosen].max()
        if values[partition[k]] == cut:
            below = np.flatnonzero(values < cut)
            at_cut = np.flatnonzero(values == cut)[: k - len(below)]
            chosen = np.concatenate([below, at_cut])
    else:
        chosen = np.arange(len(values))
    order = np.lexsort((chosen, values[chosen]))
    return chosen[order].astype(np.int64)


def topk_toward_target(scores: np.ndarray, k: int, target: float) -> np.ndarray:
    """The ``k`` candidates whose score is closest to ``target`` (the paper's "topk", gamma* = 0.5).

    ``scores``: float array (n,). Returns positions (k,), closest first.
    """
    return _smallest(np.abs(scores - target), k)


def threshold_band(scores: np.ndarray, k: int, band: tuple[float, float],
                   rng: np.random.Generator) -> np.ndarray:
    """The reference's "threshold" rule on a band ``[low, high]``.

    If at least ``k`` scores fall inside the band, ``k`` of those are taken uniformly at random;
    otherwise every candidate is ranked by its distance outside the band (0 inside) and the ``k``
    smallest are taken, so all in-band candidates are kept. Uses ``rng`` only in the first case.
    """
    low, high = band
    distance = np.maximum(low - scores, 0.0) + np.maximum(scores - high, 0.0)
    inside = np.flatnonzero(distance == 0.0)
    if len(inside) >= k:
        return np.sort(rng.choice(inside, size=k, replace=False)).astype(np.int64)
    return _smallest(distance, k)


def uniform_choice(n_candidates: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct positions out of ``n_candidates``, uniformly at random.

    Returns ``(index (k,), noise (n_candidates,))``: the positions of the ``k`` smallest of
    ``n_candidates`` uniform draws, and the draws themselves (the "scores" a random rule ranked).
    """
    noise = rng.random(n_candidates)
    return _smallest(noise, k), noise


def largest_learnability(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` candidates with the largest p(1 - p) of their score p.

    p(1 - p) = 1/4 - (p - 1/2)^2, so on the same scores this ranks exactly like
    ``topk_toward_target(scores, k, 0.5)``; it ignores any other target by design.
    """
    return _smallest(-(scores * (1.0 - scores)), k)


# What a host trains on when dynamic sampling hits its cap before k informative groups were kept
# (``mopps.RefillResult.trained_groups`` applies it; ``ReferenceSettings.dynamic_sampling_at_cap`` names it).
AT_CAP = ("fill", "repeat", "raise")
# The rollout-allocation rules a host can turn on by name (mopps.loop.allocation.RULES builds them):
# ours first, then Pilot-Commit, SPEED-RL's screening and Reinforce-Ada.
ALLOCATION_RULES = ("mopps_pilot", "pilot_commit", "speed_rl", "reinforce_ada")


def informative_groups(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Bool mask (m,): groups whose binary outcomes are not all equal (0 < successes < trials).

    This is DAPO's dynamic-sampling filter applied to *binary success*, never to a shaped score: a
    group that is all wrong but mixes formatting rewards carries no GRPO signal on correctness.
    """
    return (successes > 0.0) & (successes < trials)


def mixed_group_probability(rates: np.ndarray, group_size: int) -> np.ndarray:
    """float (m,): the chance that a group of ``group_size`` rollouts of a prompt with success rate
    ``rates`` (m,) is mixed (neither all successes nor all failures), 1 - p^n - (1 - p)^n. A mixed
    group is one whose GRPO advantage is not zero."""
    rates = np.clip(np.asarray(rates, dtype=np.float64), 0.0, 1.0)
    return 1.0 - rates**group_size - (1.0 - rates) ** group_size


def informative_draw(rates: np.ndarray, k: int, group_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct candidates drawn without replacement with probability proportional to
    ``mixed_group_probability(rates, group_size)``: a softer objective than the k nearest to 0.5,
    which spreads the batch over every candidate that can give a mixed group.

    Successive draws without replacement are sampled in one pass by the Gumbel-top-k trick
    (Kool et al. 2019): the k largest of log w + Gumbel noise. A weight of 0 (a rate of exactly 0 or
    1) is floored at 1e-300, so such candidates come only after every positive one, in random order.
    Returns ``(index (k,), keys (n,))``: positions, largest key first, and the perturbed log-weights.
    """
    weights = mixed_group_probability(rates, group_size)
    keys = np.log(np.maximum(weights, 1e-300)) + rng.gumbel(size=len(weights))
    return _smallest(-keys, k), keys


def exploration_slots(k: int, explore: float, rng: np.random.Generator) -> int:
    """How many of ``k`` slots go to exploration at share ``explore`` in [0, 1]: floor(explore * k),
    plus one with probability equal to the remainder, so the expected share is exactly ``explore``
    even when explore * k < 1. Draws from ``rng`` only when the remainder is not 0 (``explore`` 0
    leaves every stream as it was)."""
    wanted = explore * k
    slots = int(np.floor(wanted))
    remainder = wanted - slots
    if remainder > 0.0 and rng.random() < remainder:
        slots += 1
    return min(slots, k)


def with_exploration(ranked: np.ndarray, n_candidates: int, explored: int, rng: np.random.Generator) -> np.ndarray:
    """``ranked`` (the rule's k - explored positions, in rank order) followed by ``explored`` positions
    drawn uniformly, without replacement, from the candidates the rule left out. int64 (k,)."""
    if explored == 0:
        return ranked
    left_out = np.ones(n_candidates, dtype=bool)
    left_out[ranked] = False
    extra = rng.choice(np.flatnonzero(left_out), size=explored, replace=False)
    return np.concatenate([ranked, extra]).astype(np.int64)


def perturbed_rates(rates: np.ndarray, noise_sd: float, rng: np.random.Generator) -> np.ndarray:
    """float (n,): ``rates`` (n,) seen through fresh Gaussian noise of ``noise_sd`` on the logit
    (rates clipped to [1e-6, 1 - 1e-6] first), drawn anew at every call. Ranking these instead of a
    Thompson draw keeps every selection's error fresh however much evidence a prompt has: a Beta
    draw narrows with evidence, so a selector's choices become a fixed function of its (stale)
    estimates, the kind of error the bench's gain curve finds most harmful (docs/mechanism.md)."""
    clipped = np.clip(np.asarray(rates, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    logits = np.log(clipped) - np.log1p(-clipped) + noise_sd * rng.standard_normal(len(clipped))
    return 1.0 / (1.0 + np.exp(-logits))
