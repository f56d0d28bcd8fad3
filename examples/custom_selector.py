"""A selector of your own in 40 lines, checked by ``mopps.testing.check_selector``.

``MostWins`` keeps the k candidates with the highest smoothed success rate (successes + 1) /
(trials + 2), ties broken at random. Its learned state is one ``NamedTuple`` of arrays; ``_choose``
and ``_observe`` are functions of that record (and the generator they are handed); the base class
validates input, counts steps, saves and loads.

    python examples/custom_selector.py
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mopps import Selector
from mopps.testing import check_selector


class Counts(NamedTuple):
    ids: np.ndarray  # int64 (n,), sorted, unique: the prompts observed so far
    successes: np.ndarray  # float64 (n,), summed successes of each
    trials: np.ndarray  # float64 (n,), summed rollouts of each


class MostWins(Selector):
    def initial_state(self) -> Counts:
        return Counts(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))

    def _check_kind(self, kind, name):
        if kind == "str":
            raise ValueError(f"{name} holds str ids; MostWins takes integer ids only")

    def _choose(self, state, kind, ids, k, rng):
        slot = np.minimum(np.searchsorted(state.ids, ids), max(len(state.ids) - 1, 0))
        known = state.ids[slot] == ids if len(state.ids) else np.zeros(len(ids), dtype=bool)
        successes = np.where(known, state.successes[slot] if len(state.ids) else 0.0, 0.0)
        trials = np.where(known, state.trials[slot] if len(state.ids) else 0.0, 0.0)
        rate = (successes + 1.0) / (trials + 2.0)
        scores = rate + 1e-9 * rng.random(len(ids))  # random tie-break, from the selector's generator
        return np.argsort(-scores, kind="stable")[:k].astype(np.int64), scores, rate

    def _observe(self, state, kind, ids, successes, trials) -> Counts:
        merged = np.union1d(state.ids, ids)
        old, new = np.searchsorted(merged, state.ids), np.searchsorted(merged, ids)
        summed_successes, summed_trials = np.zeros(len(merged)), np.zeros(len(merged))
        summed_successes[old], summed_trials[old] = state.successes, state.trials
        summed_successes[new] += successes
        summed_trials[new] += trials
        return Counts(merged, summed_successes, summed_trials)

    def _restore(self, arrays) -> Counts:
        record = Counts(np.asarray(arrays["ids"], dtype=np.int64), np.asarray(arrays["successes"], dtype=float),
                        np.asarray(arrays["trials"], dtype=float))
        if not len(record.ids) == len(record.successes) == len(record.trials):
            raise ValueError("ids, successes and trials differ in length")
        if (np.diff(record.ids) <= 0).any() or not (0 <= record.successes).all() \
                or not (record.successes <= record.trials).all():
            raise ValueError("ids must be sorted and unique, and 0 <= successes <= trials")
        return record


if __name__ == "__main__":
    check_selector(MostWins, id_kinds=("int",))
    print("MostWins passes check_selector")
