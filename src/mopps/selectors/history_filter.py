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

from typing import Any, NamedTuple

import numpy as np

from mopps.core.id_index import IdLookup, normalize_ids
from mopps.core.selection import exploration_slots, with_exploration
from mopps.core.validation import as_float_array, check_ordered, check_probability, check_saved_ids
from mopps.selectors.base import Selector

# Outcome of a prompt's latest group.
_UNSEEN, _MIXED, _EASY, _HARD = -1, 0, 1, 2


class HistoryState(NamedTuple):
    """Learned state of ``HistoryFilter`` (arrays (n,), n = prompts observed, in order of first sight).

    ``id_kind``: "int", "str" or None while empty; ``ids``: int64 array or list of str;
    ``outcome``: int8 code of each prompt's latest group (0 mixed, 1 all right, 2 all wrong);
    ``last_rate``: float64 latest observed success rate; ``skip_easy``, ``skip_hard``: the current
    skip probabilities of prompts whose latest group was all right / all wrong.
    """

    id_kind: str | None
    ids: Any
    outcome: np.ndarray
    last_rate: np.ndarray
    skip_easy: float
    skip_hard: float


class HistoryFilter(Selector):
    """``target_zero_variance``: wanted share of zero-variance groups per batch (split evenly between
    easy and hard). ``initial_skip``: starting skip probability for both kinds. ``adapt_step``: change
    of a skip probability per update. ``min_skip``/``max_skip``: bounds of the probabilities.
    ``explore``: exploration floor in [0, 1], the share of each batch's k chosen uniformly at random
    among the candidates the filter left out (``mopps.core.selection``). Default 0, as GRESO; with
    ``max_skip`` 1 a prompt whose latest group was all wrong may be skipped for good once the skip
    probability reaches 1, so a run whose grader or policy may change wants ``max_skip`` < 1 or
    ``explore`` > 0 (0.05 recommended)."""

    def __init__(self, target_zero_variance: float = 0.25, initial_skip: float = 0.5,
                 adapt_step: float = 0.01, min_skip: float = 0.0, max_skip: float = 1.0,
                 explore: float = 0.0, seed: int | None = 0) -> None:
        self.target_zero_variance = check_probability(target_zero_variance, "target_zero_variance")
        self.initial_skip = check_probability(initial_skip, "initial_skip")
        self.adapt_step = check_probability(adapt_step, "adapt_step")
        self.min_skip = check_probability(min_skip, "min_skip")
        self.max_skip = check_probability(max_skip, "max_skip")
        check_ordered(self.min_skip, self.max_skip, "min_skip", "max_skip")
        if not self.min_skip <= self.initial_skip <= self.max_skip:
            raise ValueError(f"initial_skip = {initial_skip}; it must lie in [min_skip, max_skip]")
        self.explore = check_probability(explore, "explore")
        self._lookup = IdLookup()  # id -> slot of ``state.ids``, derived, never saved
        super().__init__(seed)

    def __len__(self) -> int:
        return len(self.state.outcome)

    def predict(self, ids) -> np.ndarray:
        """Latest observed success rate of each id (0.5 for ids never observed)."""
        kind, normalized = normalize_ids(ids, "ids")
        self._check_kind(kind, "ids")
        return self._latest(self.state, kind, normalized)[1]

    def _latest(self, state: HistoryState, kind, ids) -> tuple[np.ndarray, np.ndarray]:
        if kind is None or state.id_kind is None:
            return np.full(len(ids), _UNSEEN, dtype=np.int8), np.full(len(ids), 0.5)
        slots = self._lookup.index(state.id_kind, state.ids).find(kind, ids)
        known = slots >= 0
        safe = np.where(known, slots, 0)
        outcome = np.where(known, state.outcome[safe], _UNSEEN)
        rate = np.where(known, state.last_rate[safe], 0.5)
        return outcome, rate

    def initial_state(self) -> HistoryState:
        return HistoryState(None, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8), np.zeros(0),
                            self.initial_skip, self.initial_skip)

    def _choose(self, state, kind, ids, k, rng):
        outcome, rate = self._latest(state, kind, ids)
        skip_probability = np.where(outcome == _EASY, state.skip_easy,
                                    np.where(outcome == _HARD, state.skip_hard, 0.0))
        skipped = rng.random(len(ids)) < skip_probability
        # Rank: non-skipped before skipped, then candidate order.
        order = np.lexsort((np.arange(len(ids)), skipped))
        explored = exploration_slots(k, self.explore, rng) if self.explore else 0
        index = with_exploration(order[: k - explored].astype(np.int64), len(ids), explored, rng)
        return index, skipped.astype(np.float64), rate

    def _observe(self, state, kind, ids, successes, trials) -> HistoryState:
        rate = successes / trials
        outcome = np.where(successes >= trials, _EASY, np.where(successes <= 0.0, _HARD, _MIXED)).astype(np.int8)
        slots, ids_after, n_new = self._lookup.extend_ids(kind, state.ids, ids)
        outcomes = np.concatenate([state.outcome, np.full(n_new, _UNSEEN, dtype=np.int8)]) if n_new else state.outcome
        rates = np.concatenate([state.last_rate, np.full(n_new, 0.5)]) if n_new else state.last_rate
        outcomes[slots] = outcome
        rates[slots] = rate
        half_target = 0.5 * self.target_zero_variance
        skip = []
        for kind_code, probability in ((_EASY, state.skip_easy), (_HARD, state.skip_hard)):
            change = self.adapt_step if float(np.mean(outcome == kind_code)) > half_target else -self.adapt_step
            skip.append(float(np.clip(probability + change, self.min_skip, self.max_skip)))
        return HistoryState(kind, ids_after, outcomes, rates, *skip)

    def _config(self) -> dict[str, Any]:
        config = {
            "target_zero_variance": self.target_zero_variance,
            "initial_skip": self.initial_skip,
            "adapt_step": self.adapt_step,
            "min_skip": self.min_skip,
            "max_skip": self.max_skip,
        }
        if self.explore:  # written only when set, so files saved before the option keep loading
            config["explore"] = self.explore
        return config

    def _restore(self, arrays: dict[str, Any]) -> HistoryState:
        kind = arrays["id_kind"]
        ids = check_saved_ids(kind, arrays["ids"])
        outcome = np.asarray(arrays["outcome"])
        if outcome.dtype.kind not in "iu" or not np.isin(outcome, (_UNSEEN, _MIXED, _EASY, _HARD)).all():
            raise ValueError("outcome must hold only the codes -1, 0, 1, 2")
        last_rate = as_float_array(arrays["last_rate"], "last_rate")
        if ((last_rate < 0.0) | (last_rate > 1.0)).any():
            raise ValueError("last_rate must lie in [0, 1]")
        if not len(outcome) == len(last_rate) == len(ids):
            raise ValueError("ids, outcome and last_rate differ in length")
        skip_easy = check_probability(arrays["skip_easy"], "skip_easy")
        skip_hard = check_probability(arrays["skip_hard"], "skip_hard")
        return HistoryState(kind, ids, outcome.astype(np.int8), last_rate.copy(), skip_easy, skip_hard)
