"""DynamicSampling: DAPO's dynamic sampling (arXiv 2503.14476), the rollout-hungry baseline.

DAPO rolls out a generation batch, keeps the groups whose binary successes are not all equal, and
rolls out further generation batches until k groups are kept or ``max_num_gen_batches`` batches were
generated. Every generated rollout is counted, including those of discarded groups.

Two reference quirks are deliberately absent: the kept groups are never duplicated when the cap is
hit (the reference concatenates the last batch twice), and the filter runs on binary success, not
on a shaped score (``mopps.core.selection.informative_groups``).

It needs rollouts to decide, so besides the protocol's ``select`` (a uniform draw: one generation
batch) it offers ``fill_batch``, which drives the caller's rollout function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mopps.core.id_index import STR_KIND, first_duplicate, normalize_ids
from mopps.core.selection import informative_groups, uniform_choice
from mopps.core.validation import check_observations, check_same_length
from mopps.selectors.base import Selector


@dataclass(frozen=True)
class DynamicRound:
    """One generation batch: ``ids`` (m,), ``successes`` and ``trials`` float (m,), and ``keep`` bool
    (m,), the groups with mixed outcomes."""

    ids: Any
    successes: np.ndarray
    trials: np.ndarray
    keep: np.ndarray


@dataclass(frozen=True)
class DynamicBatch:
    """The result of ``fill_batch``.

    ``rounds``: every generation batch, in order. ``kept``: (round, position) pairs of the kept
    groups, in order, at most k. ``rollouts``: total rollouts generated (sum of all trials).
    ``reached_k``: whether k informative groups were found before the cap.
    """

    rounds: list[DynamicRound] = field(default_factory=list)
    kept: list[tuple[int, int]] = field(default_factory=list)
    rollouts: float = 0.0
    reached_k: bool = False

    @property
    def kept_ids(self):
        """Ids of the kept groups, in order: int64 array (integer ids) or list of str."""
        ids = [self.rounds[round_index].ids[position] for round_index, position in self.kept]
        if self.rounds and isinstance(self.rounds[0].ids, np.ndarray):
            return np.asarray(ids, dtype=np.int64)
        return ids


class DynamicSampling(Selector):
    """``max_num_gen_batches``: the refill cap (paper: 4 for MATH, 10 for Countdown and Geo3k)."""


    def __init__(self, max_num_gen_batches: int = 10, seed: int | None = 0) -> None:
        if isinstance(max_num_gen_batches, bool) or not isinstance(max_num_gen_batches, (int, np.integer)) \
                or max_num_gen_batches < 1:
            raise ValueError(f"max_num_gen_batches = {max_num_gen_batches!r}; it must be an integer >= 1")
        self.max_num_gen_batches = int(max_num_gen_batches)
        super().__init__(seed)
        self.rollouts_generated = 0.0

    def _choose(self, kind, ids, k):
        index, noise = uniform_choice(len(ids), k, self.rng)
        return index, noise, None

    def fill_batch(self, next_candidates: Callable[[], Any], k: int,
                   rollout: Callable[[Any], tuple[Any, Any]]) -> DynamicBatch:
        """Roll out generation batches until ``k`` informative groups are kept or the cap is hit.

        ``next_candidates()``: the next generation batch of prompt ids (the caller's shuffled stream;
        unique within a batch). ``rollout(ids)``: rolls those prompts out and returns ``(successes,
        trials)`` float arrays aligned with ``ids`` (the caller keeps the rollouts themselves and
        uses ``kept`` to assemble the training batch). If fewer than ``k`` are found by the cap, the
        batch holds what was found (possibly fewer than ``k``). A prompt is kept at most once, even if
        the stream repeats it in a later round. If either callback raises, the error propagates and
        the selector's counters are left as they were.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k = {k!r}; k must be an integer >= 1")
        rounds: list[DynamicRound] = []
        kept: list[tuple[int, int]] = []
        kept_so_far: set = set()
        rollouts = 0.0
        for round_index in range(self.max_num_gen_batches):
            kind, ids = normalize_ids(next_candidates(), "next_candidates()")
            if kind is None:
                raise ValueError("next_candidates() returned no ids")
            position = first_duplicate(kind, ids)
            if position >= 0:
                raise ValueError(f"next_candidates()[{position}] = {ids[position]!r} repeats an id of the same batch")
            successes, trials = check_observations(*rollout(ids))
            check_same_length(ids=ids, successes=successes)
            keep = informative_groups(successes, trials)
            rounds.append(DynamicRound(ids if kind == STR_KIND else ids.copy(), successes, trials, keep))
            rollouts += float(trials.sum())
            fresh = [position for position in np.flatnonzero(keep).tolist() if ids[position] not in kept_so_far]
            for position in fresh[: k - len(kept)]:
                kept.append((round_index, position))
                kept_so_far.add(ids[position])
            if len(kept) >= k:
                break
        self.rollouts_generated += rollouts
        self.step += 1
        return DynamicBatch(rounds=rounds, kept=kept, rollouts=rollouts, reached_k=len(kept) >= k)

    def _config(self) -> dict[str, Any]:
        return {"max_num_gen_batches": self.max_num_gen_batches}

    def _arrays(self) -> dict[str, Any]:
        return {"rollouts_generated": self.rollouts_generated}

    def _restored(self, arrays: dict[str, Any]) -> dict[str, Any]:
        rollouts = float(arrays["rollouts_generated"])
        if not (np.isfinite(rollouts) and rollouts >= 0.0):
            raise ValueError(f"rollouts_generated = {rollouts}; it must be finite and >= 0")
        return {"rollouts_generated": rollouts}
