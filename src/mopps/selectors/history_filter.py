"""HistoryFilter: GRESO-style skipping of prompts that gave zero-variance groups before.

GRESO (Infini-AI-Lab/GRESO) observes that a prompt whose group had zero reward variance (all right
or all wrong) is likely to have it again, and skips it *before* rollout with some probability. The
skip probabilities adapt so that the share of zero-variance groups in trained batches approaches a
target: after each update, a probability rises by ``adapt_step`` when its kind of zero-variance
group (all right = "easy", all wrong = "hard") is more frequent than half the target, and falls by
``adapt_step`` otherwise, within [``min_skip``, ``max_skip``]. Prompts never observed are never skipped.

Selection: every candidate whose latest group was zero-variance is skipped with the probability of
its kind; the first k non-skipped candidates (in candidate order, which the trainer shuffles) are
kept; if fewer than k survive, skipped ones fill the rest in candidate order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mopps.core.id_index import IdIndex, first_duplicate, normalize_ids
from mopps.core.validation import as_float_array, check_probability
from mopps.selectors.base import Selector

# Outcome of a prompt's latest group.
_UNSEEN, _MIXED, _EASY, _HARD = -1, 0, 1, 2


class HistoryFilter(Selector):
    """``target_zero_variance``: wanted share of zero-variance groups per batch (split evenly between
    easy and hard). ``initial_skip``: starting skip probability for both kinds. ``adapt_step``: change
    of a skip probability per update. ``min_skip``/``max_skip``: bounds of the probabilities."""


    def __init__(self, target_zero_variance: float = 0.25, initial_skip: float = 0.5,
                 adapt_step: float = 0.01, min_skip: float = 0.0, max_skip: float = 1.0,
                 seed: int | None = 0) -> None:
        self.target_zero_variance = check_probability(target_zero_variance, "target_zero_variance")
        self.initial_skip = check_probability(initial_skip, "initial_skip")
        self.adapt_step = check_probability(adapt_step, "adapt_step")
        self.min_skip = check_probability(min_skip, "min_skip")
        self.max_skip = check_probability(max_skip, "max_skip")
        if self.min_skip > self.max_skip:
            raise ValueError(f"min_skip = {min_skip} > max_skip = {max_skip}; min_skip must be <= max_skip")
        if not self.min_skip <= self.initial_skip <= self.max_skip:
            raise ValueError(f"initial_skip = {initial_skip}; it must lie in [min_skip, max_skip]")
        super().__init__(seed)
        self.skip_easy = self.initial_skip
        self.skip_hard = self.initial_skip
        self.index = IdIndex()
        self._outcome = np.zeros(0, dtype=np.int8)
        self._last_rate = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.index)

    def predict(self, ids) -> np.ndarray:
        """Latest observed success rate of each id (0.5 for ids never observed)."""
        kind, normalized = normalize_ids(ids, "ids")
        self._check_kind(kind, "ids")
        return self._latest(kind, normalized)[1]

    def _latest(self, kind, ids) -> tuple[np.ndarray, np.ndarray]:
        slots = self.index.find(kind, ids)
        known = slots >= 0
        safe = np.where(known, slots, 0)
        if len(self.index) == 0:
            return np.full(len(ids), _UNSEEN, dtype=np.int8), np.full(len(ids), 0.5)
        outcome = np.where(known, self._outcome[safe], _UNSEEN)
        rate = np.where(known, self._last_rate[safe], 0.5)
        return outcome, rate

    def _check_kind(self, kind, name: str) -> None:
        self.index.check_kind(kind, name)

    def _choose(self, kind, ids, k):
        outcome, rate = self._latest(kind, ids)
        skip_probability = np.where(outcome == _EASY, self.skip_easy,
                                    np.where(outcome == _HARD, self.skip_hard, 0.0))
        skipped = self.rng.random(len(ids)) < skip_probability
        # Rank: non-skipped before skipped, then candidate order.
        order = np.lexsort((np.arange(len(ids)), skipped))
        return order[:k].astype(np.int64), skipped.astype(np.float64), rate

    def _observe(self, kind, ids, successes, trials) -> None:
        rate = successes / trials
        outcome = np.where(successes >= trials, _EASY, np.where(successes <= 0.0, _HARD, _MIXED))
        slots = self.index.insert(kind, ids)
        if len(self.index) > len(self._outcome):
            grow = max(len(self.index), 2 * len(self._outcome)) - len(self._outcome)
            self._outcome = np.concatenate([self._outcome, np.full(grow, _UNSEEN, dtype=np.int8)])
            self._last_rate = np.concatenate([self._last_rate, np.full(grow, 0.5)])
        self._outcome[slots] = outcome
        self._last_rate[slots] = rate
        half_target = 0.5 * self.target_zero_variance
        for kind_code, attribute in ((_EASY, "skip_easy"), (_HARD, "skip_hard")):
            share = float(np.mean(outcome == kind_code))
            change = self.adapt_step if share > half_target else -self.adapt_step
            setattr(self, attribute, float(np.clip(getattr(self, attribute) + change,
                                                   self.min_skip, self.max_skip)))

    def _config(self) -> dict[str, Any]:
        return {
            "target_zero_variance": self.target_zero_variance,
            "initial_skip": self.initial_skip,
            "adapt_step": self.adapt_step,
            "min_skip": self.min_skip,
            "max_skip": self.max_skip,
        }

    def _arrays(self) -> dict[str, Any]:
        count = len(self.index)
        return {
            "id_kind": self.index.kind,
            "ids": self.index.ids(),
            "outcome": self._outcome[:count].copy(),
            "last_rate": self._last_rate[:count].copy(),
            "skip_easy": self.skip_easy,
            "skip_hard": self.skip_hard,
        }

    def _restored(self, arrays: dict[str, Any]) -> dict[str, Any]:
        kind = arrays["id_kind"]
        if kind not in (None, "int", "str"):
            raise ValueError(f"id_kind = {kind!r}; it must be None, 'int' or 'str'")
        stored_kind, ids = normalize_ids(arrays["ids"], "ids")
        if stored_kind not in (None, kind):
            raise ValueError(f"id_kind = {kind!r} but ids are {stored_kind}")
        if first_duplicate(stored_kind, ids) >= 0:
            raise ValueError("ids are not unique")
        outcome = np.asarray(arrays["outcome"])
        if outcome.dtype.kind not in "iu" or not np.isin(outcome, (_UNSEEN, _MIXED, _EASY, _HARD)).all():
            raise ValueError("outcome must hold only the codes -1, 0, 1, 2")
        last_rate = as_float_array(arrays["last_rate"], "last_rate")
        if ((last_rate < 0.0) | (last_rate > 1.0)).any():
            raise ValueError("last_rate must lie in [0, 1]")
        if not len(outcome) == len(last_rate) == len(ids):
            raise ValueError("ids, outcome and last_rate differ in length")
        return {
            "index": IdIndex.from_ids(stored_kind, ids),
            "_outcome": outcome.astype(np.int8),
            "_last_rate": last_rate.copy(),
            "skip_easy": check_probability(arrays["skip_easy"], "skip_easy"),
            "skip_hard": check_probability(arrays["skip_hard"], "skip_hard"),
        }
