"""Turn flat per-rollout records into per-prompt observations, the input of every posterior update.

Trainers hand over one reward per generated response; the posterior wants, per prompt, how many of
its rollouts succeeded. ``SuccessRule`` says what "success" means for a reward scale, and
``aggregate_rollouts`` sums per prompt in one vectorised pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mopps.core.id_index import STR_KIND, normalize_ids
from mopps.core.validation import as_float_array, as_number_array, check_choice, check_number, check_same_length

SUCCESS_RULE_KINDS = ("threshold", "sign", "fraction")


@dataclass(frozen=True)
class SuccessRule:
    """How one rollout's reward becomes its success (0/1, or a fraction for ``"fraction"``).

    - ``"threshold"``: success = reward >= ``threshold``. With the default 1.0 this is the reference's
      binarisation of ``acc`` (``acc >= 1``); with a shaped score (Countdown's 1 / 0.1 / 0) it counts
      only fully correct answers.
    - ``"sign"``: success = reward > 0, for +1/-1 rewards (DAPO's math reward).
    - ``"fraction"``: the reward itself, which must lie in [0, 1], is a fractional success.
    """

    kind: str = "threshold"
    threshold: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", SUCCESS_RULE_KINDS)
        check_number(self.threshold, "threshold")

    def successes(self, rewards) -> np.ndarray:
        """Success of each rollout, float64 array (m,) in [0, 1]."""
        rewards = as_float_array(rewards, "rewards")
        if self.kind == "threshold":
            return (rewards >= self.threshold).astype(np.float64)
        if self.kind == "sign":
            return (rewards > 0.0).astype(np.float64)
        outside = (rewards < 0.0) | (rewards > 1.0)
        if outside.any():
            position = int(np.argmax(outside))
            raise ValueError(
                f"rewards[{position}] = {rewards[position]}; with kind 'fraction' rewards must lie in [0, 1]"
            )
        return rewards


@dataclass(frozen=True)
class Observations:
    """Per-prompt evidence: ``ids`` (m,) unique prompt ids (int64 array or list of str), sorted;
    ``successes`` float (m,) summed successes; ``trials`` float (m,) rollouts per prompt."""

    ids: object
    successes: np.ndarray
    trials: np.ndarray


def aggregate_rollouts(prompt_ids, rewards, rule: SuccessRule = SuccessRule(), has_verdict=None) -> Observations:
    """Sum per-rollout successes by prompt.

    ``prompt_ids``: (r,) the prompt of each rollout, ints or strings, any order (e.g. rows shuffled by
    verl's ``balance_batch``); ``rewards``: float (r,), one reward per rollout. Groups of unequal size
    are fine. Returns ``Observations`` with one row per distinct prompt, ids in sorted order.

    ``has_verdict``: optional (r,), read by :func:`as_verdict_mask`; False for a rollout whose
    reward reached no verdict (e.g. a grader timeout). Such rollouts are no evidence: their rewards
    are not read (NaN is fine there) and they count in no prompt's trials, so a prompt's ``trials``
    is the number of its rollouts *with* a verdict, fewer than the n rolled out. A prompt none of
    whose rollouts has a verdict is left out of the result entirely (rather than given trials = 0,
    which selectors refuse).
    """
    kind, ids = normalize_ids(prompt_ids, "prompt_ids")
    unique_ids, successes, trials, _ = group_rollouts(kind, ids, rewards, rule, has_verdict)
    judged = trials > 0
    if not judged.all():
        unique_ids = select_ids(kind, unique_ids, judged)
        successes, trials = successes[judged], trials[judged]
    return Observations(unique_ids, successes, trials)


def group_rollouts(kind, ids, rewards, rule: SuccessRule, has_verdict=None):
    """Per-prompt successes and trials of flat rollout records, KEEPING prompts without a verdict.

    ``kind``/``ids`` (r,) as returned by ``normalize_ids``; ``rewards`` float (r,) judged by
    ``rule``; ``has_verdict`` optional (r,) (see :func:`as_verdict_mask`; a reward with a verdict
    must be finite, one without is not read). Returns ``(unique_ids, successes (m,), trials (m,),
    rollouts_without_verdict int)`` with ids sorted; a prompt all of whose rollouts lack a verdict
    has trials 0 (``SelectionLoop`` still needs it, to close its prediction; ``aggregate_rollouts``
    drops it). ``ValueError`` names the argument and the first bad position.
    """
    values = as_number_array(rewards, "rewards")
    check_same_length(prompt_ids=ids, rewards=values)
    if has_verdict is None:
        verdict = np.ones(len(values), dtype=bool)
    else:
        verdict = as_verdict_mask(has_verdict)
        check_same_length(rewards=values, has_verdict=verdict)
    # Judge every rollout (so error positions refer to the caller's arrays); rewards without a
    # verdict are replaced first, as they may be NaN.
    successes = rule.successes(np.where(verdict, values, 0.0)) * verdict
    unique_ids, (summed, trials) = sum_by_id(kind, ids, successes, verdict.astype(np.float64))
    return unique_ids, summed, trials, int(len(verdict) - np.count_nonzero(verdict))


def select_ids(kind, ids, mask: np.ndarray):
    """The normalized ``ids`` where the bool ``mask`` is True (a list for str ids, else an array)."""
    if kind == STR_KIND:
        return [value for value, kept in zip(ids, mask.tolist()) if kept]
    return ids[mask]


def as_verdict_mask(has_verdict) -> np.ndarray:
    """Per-rollout ``has_verdict`` as a bool array (r,): the one reading every host uses.

    Accepts bools, or numbers that are exactly 0 or 1 (``mopps.tasks`` graders report 1.0 / 0.0,
    which verl stacks into a float array). Anything else (NaN, 0.7, text) is a ``ValueError``
    naming ``has_verdict`` and the first bad position: a half-read verdict is no evidence either way.
    """
    array = np.asarray(has_verdict)
    if array.dtype == np.bool_ and array.ndim == 1:
        return array
    numbers = as_number_array(array, "has_verdict")
    bad = (numbers != 0.0) & (numbers != 1.0)
    if bad.any():
        position = int(np.argmax(bad))
        raise ValueError(f"has_verdict[{position}] = {numbers[position]}; has_verdict must be True/False or 1/0")
    return numbers == 1.0


def sum_by_id(kind, ids, *columns: np.ndarray):
    """Sum each float column (m,) over rows that share an id.

    ``kind``/``ids`` as returned by ``normalize_ids``. Returns ``(unique_ids, sums)``: the distinct
    ids in sorted order (int64 array or list of str) and one float64 array per column, aligned.
    """
    if kind is None:
        return np.zeros(0, dtype=np.int64), [np.zeros(0) for _ in columns]
    if kind == STR_KIND:
        # A dict keeps strings exact (numpy's fixed-width text type drops trailing NULs, merging
        # "a" and "a\0"); slots are first-occurrence order, then re-labelled in sorted id order.
        slot_of: dict[str, int] = {}
        first_order = np.fromiter((slot_of.setdefault(value, len(slot_of)) for value in ids),
                                  dtype=np.int64, count=len(ids))
        firsts = list(slot_of)
        order = sorted(range(len(firsts)), key=firsts.__getitem__)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        inverse = rank[first_order]
        unique_ids = [firsts[slot] for slot in order]
    else:
        unique, inverse = np.unique(ids, return_inverse=True)
        unique_ids = unique.astype(np.int64)
    sums = [np.bincount(inverse, weights=column, minlength=len(unique_ids)) for column in columns]
    return unique_ids, sums
