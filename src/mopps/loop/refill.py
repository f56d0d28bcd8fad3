"""``Refill``: dynamic sampling (DAPO, arXiv 2503.14476) as a protocol on top of any selector.

DAPO rolls out a generation batch, keeps the groups whose binary successes are not all equal, and
rolls out further generation batches until k groups are kept or ``max_num_gen_batches`` batches were
generated. Here each generation batch is ``loop.next(batch_size)``, so the candidates of every
refill are chosen by the loop's selector: ``Uniform`` gives DAPO; ``MoPPS`` gives selection-guided
dynamic sampling. Every rollout is counted and every rollout's evidence reaches the selector
(``loop.observe``), discarded groups included.

The filter runs on binary success (``mopps.core.selection.informative_groups``), not on a shaped
score. What a host trains on when the cap is hit before k groups were kept is the host's setting,
applied by ``RefillResult.trained_groups`` (one of ``AT_CAP``): ``"fill"`` tops the batch up with
rolled-out groups that were not kept (the host gives them no advantage), ``"repeat"`` repeats kept
groups, ``"raise"`` stops the run (verl's DAPO). The reference's own quirk, concatenating the last batch twice, is absent.

``DynamicSampling`` (a ``Selector`` in name only until mopps 0.1) is gone rather than kept as an
alias: it took no loop, so an alias would have to change its constructor and ``fill_batch``
signature anyway, and an ``ImportError`` says so more clearly than a half-compatible name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mopps.core.selection import AT_CAP, informative_groups
from mopps.core.validation import check_choice, check_integer
from mopps.loop.ledger import sortable_ids
from mopps.loop.selection_loop import RUNNING_TOTALS, Batch, Evidence, SelectionLoop


@dataclass(frozen=True)
class RefillRound:
    """One generation batch: the ``batch`` the loop chose, ``successes`` and ``trials`` float (b,)
    per chosen prompt (rollouts with a verdict), ``keep`` bool (b,): the groups taken into the
    trained batch (informative, and not kept in an earlier round), and the ``metrics`` of its
    ``observe``."""

    batch: Batch
    successes: np.ndarray
    trials: np.ndarray
    keep: np.ndarray
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrainedGroups:
    """What a host trains on after a refill (``RefillResult.trained_groups``), k groups in order.

    ``groups``: int64 (k, 2), (round, position in that round's batch); ``positions``: int64 (k,),
    their dataset rows; ``kept``: bool (k,), False for a group that only fills the batch at the cap
    (a host trains it with advantage 0); ``informative``: bool (k,), its successes are not all equal.
    """

    groups: np.ndarray
    positions: np.ndarray
    kept: np.ndarray
    informative: np.ndarray

    def __len__(self) -> int:
        return len(self.groups)

    def metrics(self) -> dict[str, float]:
        """``mopps/trained_groups`` and ``mopps/trained_zero_variance_frac`` (share of trained groups
        whose successes are all equal: 0 unless the cap was hit)."""
        return {"mopps/trained_groups": float(len(self)),
                "mopps/trained_zero_variance_frac": float(1.0 - self.informative.mean())}


@dataclass(frozen=True)
class RefillResult:
    """``rounds``: every generation batch, in order; ``kept``: (round, position in that round's
    batch) of the kept groups, in order, at most k; ``rollouts``: rollouts generated (all rounds,
    with or without a verdict); ``reached_k``: whether k informative groups were found before the cap."""

    rounds: list[RefillRound] = field(default_factory=list)
    kept: list[tuple[int, int]] = field(default_factory=list)
    rollouts: int = 0
    reached_k: bool = False

    @property
    def kept_positions(self) -> np.ndarray:
        """Dataset rows of the kept groups, int64 (kept,), in order."""
        return np.array([self.rounds[r].batch.positions[p] for r, p in self.kept], dtype=np.int64)

    def metrics(self) -> dict[str, float]:
        """The one set of metrics a host logs for a refill (with ``TrainedGroups.metrics()``).

        Every round counted: each round's loop metrics (``Batch.metrics()`` and its ``observe``'s) as
        their mean over the rounds that report them (the running totals ``RUNNING_TOTALS``: the last
        round's), so a metric means per generation batch what it means without dynamic sampling; and the
        refill's totals: ``mopps/generation_batches`` (rounds rolled out), ``mopps/kept_groups``,
        ``mopps/generated_groups``, ``mopps/kept_share`` (kept / generated groups) and
        ``mopps/generated_rollouts`` (all rounds, with or without a verdict)."""
        per_round = [{**round_.batch.metrics(), **round_.metrics} for round_ in self.rounds]
        combined = {name: per_round[-1][name] if name in RUNNING_TOTALS else
                    float(np.mean([metrics[name] for metrics in per_round if name in metrics]))
                    for name in dict.fromkeys(name for metrics in per_round for name in metrics)}
        generated = sum(len(round_.batch) for round_ in self.rounds)
        return {**combined,
                "mopps/generation_batches": float(len(self.rounds)), "mopps/kept_groups": float(len(self.kept)),
                "mopps/generated_groups": float(generated),
                "mopps/kept_share": len(self.kept) / generated if generated else float("nan"),
                "mopps/generated_rollouts": float(self.rollouts)}

    def trained_groups(self, k: int, at_cap: str = "fill") -> TrainedGroups:
        """The k groups a host trains on: the kept groups in order and, when fewer than k were kept
        (the cap was hit), per ``at_cap``:

        ``"fill"``: the groups that were rolled out but not kept, latest round first, each round
        in its selector's order (equal successes; a host trains them with advantage 0); ``"repeat"``: the
        kept groups again, in order, as often as needed (with none kept, as ``"fill"``);
        ``"raise"``: ``RuntimeError``. ``ValueError`` when fewer than k groups were rolled out.
        """
        k = check_integer(k, "k", minimum=1)
        check_choice(at_cap, "at_cap", AT_CAP)
        chosen = list(self.kept[:k])
        missing = k - len(chosen)
        if missing == 0:
            return self._trained(chosen, len(chosen))
        if at_cap == "raise":
            raise RuntimeError(
                f"dynamic sampling kept {len(chosen)} informative groups of the {k} wanted after "
                f"{len(self.rounds)} generation batches (max_num_gen_batches); raise the cap, or train on what "
                "was found with at_cap='fill' or 'repeat'"
            )
        if at_cap == "repeat" and chosen:
            return self._trained([chosen[index % len(chosen)] for index in range(k)], k)
        kept = set(chosen)
        spare = [(index, position) for index in reversed(range(len(self.rounds)))
                 for position in range(len(self.rounds[index].batch)) if (index, position) not in kept]
        if len(spare) < missing:
            raise ValueError(f"k = {k} groups wanted but only {len(chosen) + len(spare)} were rolled out")
        return self._trained(chosen + spare[:missing], len(chosen))

    def _trained(self, groups: list[tuple[int, int]], kept: int) -> TrainedGroups:
        """``groups``, of which the first ``kept`` are kept groups (or copies of them)."""
        groups = np.array(groups, dtype=np.int64).reshape(-1, 2)
        # Per-group arrays of all rounds end to end; a group's row there is its round's offset + position.
        rows = np.cumsum([0] + [len(round_.batch) for round_ in self.rounds])[groups[:, 0]] + groups[:, 1]
        successes = np.concatenate([round_.successes for round_ in self.rounds])[rows]
        trials = np.concatenate([round_.trials for round_ in self.rounds])[rows]
        return TrainedGroups(groups, np.concatenate([round_.batch.positions for round_ in self.rounds])[rows],
                             np.arange(len(groups)) < kept, informative_groups(successes, trials))


class Refill:
    """Dynamic sampling over ``loop``: ``max_num_gen_batches`` (>= 1) caps the generation batches per
    call (paper: 4 for MATH, 10 for Countdown and Geo3k)."""

    def __init__(self, loop: SelectionLoop, max_num_gen_batches: int = 10) -> None:
        if not isinstance(loop, SelectionLoop):
            raise ValueError(f"loop is a {type(loop).__name__}; it must be a SelectionLoop")
        self.loop = loop
        self.max_num_gen_batches = check_integer(max_num_gen_batches, "max_num_gen_batches", minimum=1)

    def fill(self, k: int, rollout: Callable[[Batch], tuple[Any, ...]], batch_size: int | None = None) -> RefillResult:
        """Roll out generation batches of ``batch_size`` (default k) prompts until ``k`` informative
        groups are kept or the cap is hit.

        ``rollout(batch)`` rolls out ``batch.positions`` and returns ``(prompt_ids, rewards)`` or
        ``(prompt_ids, rewards, has_verdict)``, flat per rollout as ``SelectionLoop.observe`` takes
        them (the host keeps the rollouts themselves and assembles the trained batch from ``kept``).
        A prompt is kept at most once per call. If ``rollout`` raises, or returns something
        ``observe`` refuses (a ``ValueError`` naming ``rollout(batch)``'s return), the round it was
        called for is undone (``SelectionLoop.atomic``: the loop is as before that round's ``next``)
        and the error propagates; rounds already observed stay learned. All rounds come from one
        policy: with the loop's ``clock="observe"`` the selector is told of one policy update when the
        fill ends (any round taught it), never one per round.
        """
        k = check_integer(k, "k", minimum=1)
        if batch_size is None:
            batch_size = k
        else:
            batch_size = check_integer(batch_size, "batch_size", minimum=1)
            if batch_size > len(self.loop):
                raise ValueError(f"batch_size = {batch_size} > {len(self.loop)} prompts in the dataset")
        rounds: list[RefillRound] = []
        kept: list[tuple[int, int]] = []
        kept_rows = np.zeros(0, dtype=np.int64)
        rollouts = 0
        # Every round is rolled out with the same policy: one policy update for the whole fill.
        with self.loop.one_policy_update():
            for round_index in range(self.max_num_gen_batches):
                evidence, batch = self._rolled_out(batch_size, rollout)
                metrics = self.loop.apply(evidence)
                rollouts += int(evidence.trials.sum()) + evidence.rollouts_without_verdict
                successes, trials = _aligned(evidence, batch)
                fresh = informative_groups(successes, trials) & ~np.isin(batch.positions, kept_rows)
                taken = np.flatnonzero(fresh)[: k - len(kept)]
                keep = np.zeros(len(batch), dtype=bool)
                keep[taken] = True
                kept.extend((round_index, position) for position in taken.tolist())
                kept_rows = np.concatenate([kept_rows, batch.positions[taken]])
                rounds.append(RefillRound(batch, successes, trials, keep, metrics))
                if len(kept) >= k:
                    break
        return RefillResult(rounds, kept, rollouts, len(kept) >= k)

    def _rolled_out(self, batch_size: int, rollout: Callable[[Batch], tuple[Any, ...]]) -> tuple[Evidence, Batch]:
        """``loop.next(batch_size)``, rolled out and checked; undone if the rollout fails or its
        return is refused, so a bad round opens no prediction and takes no candidates."""
        loop = self.loop
        with loop.atomic():
            batch = loop.next(batch_size)
            records = rollout(batch)
            if not isinstance(records, (tuple, list)) or len(records) not in (2, 3):
                shown = type(records).__name__ if not isinstance(records, (tuple, list)) \
                    else f"a {type(records).__name__} of {len(records)}"
                raise ValueError(f"rollout(batch) returned {shown}; it must return (prompt_ids, rewards) or "
                                 "(prompt_ids, rewards, has_verdict), flat per rollout")
            try:
                evidence = loop.evidence(*records)
            except ValueError as error:
                raise ValueError(f"rollout(batch) returned records observe() refuses: {error}") from None
        return evidence, batch


def _aligned(evidence: Evidence, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """``(successes, trials)`` float (b,) of the batch's prompts (0, 0 for a prompt without rollouts)."""
    successes = np.zeros(len(batch))
    trials = np.zeros(len(batch))
    if evidence.kind is None:
        return successes, trials
    observed, wanted = sortable_ids(evidence.kind, evidence.ids), sortable_ids(evidence.kind, batch.ids)
    rows = np.minimum(np.searchsorted(observed, wanted), len(observed) - 1)  # evidence ids are sorted
    present = observed[rows] == wanted
    successes[present] = evidence.successes[rows[present]]
    trials[present] = evidence.trials[rows[present]]
    return successes, trials
