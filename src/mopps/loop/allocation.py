"""``Allocation``: how many rollouts each prompt gets in one training step: pilot, choose, commit.

Where ``Refill`` (dynamic sampling) rolls out whole groups and throws the uninformative ones away,
an allocation step rolls out a few rollouts of a prompt first (a *pilot*), lets the evidence reach
the selector, and only then decides whom to train and how many more rollouts each gets. Pilot
rollouts of a trained prompt are part of its group; every rollout is counted and every rollout is
evidence for the selector. One step is one policy (``SelectionLoop.one_policy_update``: one tick).

    allocation = Allocation(loop, PosteriorPilot(), group_size=8)
    result = allocation.step(32, rollout)      # rollout(request) -> rewards (r * m,) flat
    result.positions                            # the trained prompts' dataset rows (k,)
    result.members[i]                           # (round, row) of each rollout of prompt i's group

``rollout(request)`` rolls out ``request.rollouts_per_prompt`` (m) answers of each prompt of
``request.positions`` (r,) and returns their rewards, flat (r * m,), grouped by prompt in request
order (rows i*m .. i*m+m-1 belong to ``request.positions[i]``), or ``(rewards, has_verdict)``. The
host keeps the rollouts; ``result.members`` says which rows of which round make each trained group.

The rules (each a small object with ``allocate(session, k)``; the step's decisions, nothing else):

- ``PosteriorPilot`` (ours, the bench's ``mopps_pilot``): the selector chooses k; each is piloted
  with m rollouts, which are the first m of its group; a prompt whose pilot came out all equal is
  replaced by a fresh choice of the selector only where the selector's updated posterior says the
  rest of its group is more likely wasted than a replacement's whole group; the rest get n - m.
- ``PilotCommit`` (Pilot-Commit, arXiv 2605.26606): pilot a quarter of the group on 3x the batch,
  keep 0.125 <= p_hat <= 0.75, train the k most variable, commit the rest of their groups.
- ``SpeedScreen`` (SPEED-RL, arXiv 2506.09016): screen batches of k with n/2 rollouts until k
  prompts have an intermediate pass rate, then complete their groups.
- ``ReinforceAda`` (Reinforce-Ada, arXiv 2510.04996): rounds of n rollouts of every unfinished
  prompt, at most 4, a prompt finishing when it has n/2 successes and n/2 failures ("balanced") or
  one success ("positive"); each group then down-sampled to n, as balanced as it allows.

Adapted to our hosts (docs/allocation.md says why): the published rules keep survivors in a buffer
across steps (Pilot-Commit, SPEED-RL); here a step trains what its own rounds found, filling with the
prompts nearest the band when too few passed, so a host never keeps rollouts across optimiser steps
and the loop's state needs nothing beyond what it saves today. Every trained group has n rollouts
(Reinforce-Ada's down-sampling, or pilot + commit), so hosts with one global group size take it.

Failure: if ``rollout`` raises or returns what ``observe`` refuses, the whole step is undone
(``SelectionLoop.atomic``): the loop is as before the step and the error propagates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mopps.core.evidence import as_verdict_mask
from mopps.core.posterior import log_gamma
from mopps.core.selection import ALLOCATION_RULES, informative_groups
from mopps.core.validation import as_number_array, check_band, check_choice, check_flag, check_integer, check_number
from mopps.loop.selection_loop import RUNNING_TOTALS, Batch, SelectionLoop

PURPOSES = ("pilot", "commit", "screen", "round")


@dataclass(frozen=True)
class RolloutRequest:
    """One generation round a host rolls out: ``positions`` int64 (r,) dataset rows, ``ids`` their
    prompt ids, ``rollouts_per_prompt`` m >= 1, ``purpose`` (one of ``PURPOSES``) and ``index``,
    the round's number within the step (0, 1, ...)."""

    positions: np.ndarray
    ids: Any
    rollouts_per_prompt: int
    purpose: str
    index: int

    def __len__(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class AllocationRound:
    """A rolled-out request: ``success`` float (r * m,) per rollout (NaN without a verdict), in the
    request's row order, and the ``metrics`` of the loop's ``apply``."""

    request: RolloutRequest
    success: np.ndarray
    metrics: dict[str, float]

    def per_prompt(self) -> tuple[np.ndarray, np.ndarray]:
        """``(successes, trials)`` float (r,): summed successes and rollouts with a verdict per prompt."""
        grid = self.success.reshape(len(self.request), self.request.rollouts_per_prompt)
        return np.nansum(grid, axis=1), np.sum(~np.isnan(grid), axis=1).astype(np.float64)


@dataclass(frozen=True)
class AllocationResult:
    """One step's rounds and the groups a host trains.

    ``positions``: int64 (k,), the trained prompts' dataset rows; ``members``: k int64 arrays (g_i, 2),
    the (round, row) of each rollout in prompt i's group (rows of ``rounds[round]``'s flat records);
    ``informative``: bool (k,), the group's successes are not all equal; ``rollouts``: every rollout
    generated this step (with or without a verdict)."""

    rounds: list[AllocationRound] = field(default_factory=list)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    members: list[np.ndarray] = field(default_factory=list)
    informative: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    rollouts: int = 0

    def group_sizes(self) -> np.ndarray:
        """int64 (k,): rollouts in each trained group."""
        return np.array([len(member) for member in self.members], dtype=np.int64)

    def rewards_of(self, round_rewards: list[np.ndarray]) -> list[np.ndarray]:
        """Each trained group's values, given one flat array per round (e.g. the rewards the host's
        ``rollout`` returned): a list of k arrays (g_i,)."""
        return [np.concatenate([round_rewards[r][[row]] for r, row in member.tolist()]) if len(member) else
                np.zeros(0) for member in self.members]

    def metrics(self) -> dict[str, float]:
        """``mopps/*`` metrics of the step: the loop's per-round metrics averaged over the rounds (running
        totals: the last round's), and ``mopps/allocated_rollouts`` (all rounds),
        ``mopps/pilot_rollouts`` (pilot and screening rounds), ``mopps/pilot_prompts``,
        ``mopps/pilot_reused_share`` (share of pilot rollouts that ended in a trained group),
        ``mopps/unused_rollouts`` (rollouts in no trained group), ``mopps/generation_rounds``,
        ``mopps/trained_groups`` and ``mopps/trained_zero_variance_frac``."""
        per_round = [round_.metrics for round_ in self.rounds]
        combined = {name: per_round[-1][name] if name in RUNNING_TOTALS else
                    float(np.mean([metrics[name] for metrics in per_round if name in metrics]))
                    for name in dict.fromkeys(name for metrics in per_round for name in metrics)}
        piloting = [index for index, round_ in enumerate(self.rounds) if round_.request.purpose in ("pilot", "screen")]
        pilot_rollouts = sum(self.rounds[index].success.size for index in piloting)
        used = np.concatenate(self.members) if self.members else np.zeros((0, 2), dtype=np.int64)
        reused = int(np.isin(used[:, 0], piloting).sum())
        return {**combined,
                "mopps/allocated_rollouts": float(self.rollouts),
                "mopps/pilot_rollouts": float(pilot_rollouts),
                "mopps/pilot_prompts": float(sum(len(self.rounds[index].request) for index in piloting)),
                "mopps/pilot_reused_share": reused / pilot_rollouts if pilot_rollouts else float("nan"),
                "mopps/unused_rollouts": float(self.rollouts - len(used)),
                "mopps/generation_rounds": float(len(self.rounds)),
                "mopps/trained_groups": float(len(self.positions)),
                "mopps/trained_zero_variance_frac":
                    float(1.0 - self.informative.mean()) if len(self.informative) else float("nan")}


class Session:
    """One step in progress: what a rule calls to offer, choose, roll out and train. Rules read the
    loop (``session.loop``) but change it only through these methods. Every rollout of the step is
    one entry of flat arrays (its prompt's dataset row, round, row in that round, success)."""

    def __init__(self, loop: SelectionLoop, rollout: Callable, group_size: int) -> None:
        self.loop, self.group_size, self._rollout = loop, group_size, rollout
        self.rounds: list[AllocationRound] = []
        self._position = np.zeros(0, dtype=np.int64)
        self._where = np.zeros((0, 2), dtype=np.int64)  # (round, row) of each rollout
        self._success = np.zeros(0)

    @property
    def rollouts(self) -> int:
        return len(self._success)

    def offer(self, count: int) -> Batch:
        """The loop's next ``count`` prompts (from ``ts_ratio * count`` candidates)."""
        return self.loop.next(count)

    def choose(self, positions: np.ndarray, count: int) -> Batch:
        """The selector's choice of ``count`` among ``positions`` (already offered this step)."""
        return self.loop.choose_among(positions, count)

    def roll(self, positions: np.ndarray, rollouts_per_prompt: int, purpose: str) -> AllocationRound:
        """Roll out ``rollouts_per_prompt`` answers of each of ``positions`` and teach the loop."""
        positions = np.asarray(positions, dtype=np.int64)
        check_choice(purpose, "purpose", PURPOSES)
        request = RolloutRequest(positions, self.loop.ids_at(positions), rollouts_per_prompt, purpose, len(self.rounds))
        records = self._rollout(request)
        if isinstance(records, list) and len(records) == 2 and all(np.ndim(part) == 1 for part in records):
            records = tuple(records)  # [rewards, has_verdict], as Refill's hosts write it
        if isinstance(records, tuple):
            if len(records) != 2:
                raise ValueError(f"rollout(request) returned a tuple of {len(records)}; it must return rewards "
                                 "or (rewards, has_verdict), flat per rollout")
            rewards, has_verdict = records
        else:
            rewards, has_verdict = records, None
        repeated = np.repeat(positions, rollouts_per_prompt)
        try:
            evidence = self.loop.evidence(self.loop.ids_at(repeated), rewards, has_verdict)
        except ValueError as error:
            raise ValueError(f"rollout(request) returned records observe() refuses: {error}") from None
        judged = np.ones(len(repeated), dtype=bool) if has_verdict is None else as_verdict_mask(has_verdict)
        success = self.loop.rule.successes(np.where(judged, as_number_array(rewards, "rewards"), 0.0))
        success[~judged] = np.nan
        metrics = self.loop.apply(evidence)
        round_ = AllocationRound(request, success, metrics)
        self.rounds.append(round_)
        self._position = np.concatenate([self._position, repeated])
        self._where = np.concatenate([self._where, np.stack(
            [np.full(len(repeated), request.index), np.arange(len(repeated))], axis=1)])
        self._success = np.concatenate([self._success, success])
        return round_

    def step_counts(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(successes, trials)`` float (len(positions),) of this step's rollouts of each prompt
        (``positions`` distinct dataset rows)."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros(0), np.zeros(0)
        order = np.argsort(positions, kind="stable")
        rows = np.minimum(np.searchsorted(positions[order], self._position), len(positions) - 1)
        mine = positions[order][rows] == self._position
        return self._summed(order[rows[mine]], self._success[mine], len(positions))

    @staticmethod
    def _summed(group: np.ndarray, success: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
        """Per group 0 .. groups - 1 of the rollouts' ``group`` (r,): summed successes and rollouts with
        a verdict (a NaN success has none)."""
        judged = ~np.isnan(success)
        return (np.bincount(group, weights=np.where(judged, success, 0.0), minlength=groups),
                np.bincount(group, weights=judged.astype(np.float64), minlength=groups))

    def members(self, positions: np.ndarray) -> list[np.ndarray]:
        """Per dataset row of ``positions``: int64 (g, 2), every (round, row) of this step's rollouts
        of it, in the order they were rolled out."""
        order = np.argsort(self._position, kind="stable")  # stable: a prompt's rollouts stay in order
        ordered = self._position[order]
        positions = np.asarray(positions, dtype=np.int64)
        starts, ends = np.searchsorted(ordered, positions, "left"), np.searchsorted(ordered, positions, "right")
        return [self._where[order[start:end]] for start, end in zip(starts.tolist(), ends.tolist())]

    def result(self, positions: np.ndarray, members: list[np.ndarray] | None = None) -> AllocationResult:
        """The step's result training ``positions`` with ``members`` (default: all their rollouts)."""
        positions = np.asarray(positions, dtype=np.int64)
        members = self.members(positions) if members is None else members
        sizes = np.array([len(member) for member in members], dtype=np.int64)
        chosen = np.concatenate(members) if members else np.zeros((0, 2), dtype=np.int64)
        offsets = np.cumsum([0] + [len(round_.success) for round_ in self.rounds])
        flat = offsets[chosen[:, 0]] + chosen[:, 1]
        successes, trials = self._summed(np.repeat(np.arange(len(members)), sizes), self._success[flat], len(members))
        return AllocationResult(self.rounds, positions, members, informative_groups(successes, trials), self.rollouts)


def pilot_size(group_size: int, fraction: float) -> int:
    """Pilot rollouts m = round(fraction * n), at least 1 and at most n - 1."""
    return int(min(max(round(fraction * group_size), 1), group_size - 1))


def pilot_and_rest(group_size: int, fraction: float) -> tuple[int, int]:
    """``(m, n - m)``: a pilot of ``fraction`` of a group of n (``pilot_size``) and the rest of it."""
    m = pilot_size(group_size, fraction)
    return m, group_size - m


def _fill_order(rates: np.ndarray, trials: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Positions (into ``rates``) in the order a step trains them: inside ``band`` first, most
    variable first (p(1 - p) largest), then the rest by distance to the band; prompts without a
    verdict last. Stable, so the offered order breaks ties."""
    low, high = band
    judged = trials > 0
    inside = judged & (rates >= low) & (rates <= high)
    distance = np.where(inside, -rates * (1.0 - rates), np.maximum(low - rates, rates - high))
    return np.lexsort((distance, ~inside, ~judged))


@dataclass(frozen=True)
class PilotCommit:
    """Pilot-Commit (arXiv 2605.26606, read in its verl ``recipe/pc``): pilot ``pilot_fraction`` of the
    group (a quarter: 32 of 128, 16 of 64) on ``pilot_multiple`` (3) times the batch of prompts the
    loop offers, keep 0.125 <= p_hat <= 0.75 (``band``), train the k most variable of them (p_hat
    (1 - p_hat) largest) and commit the remaining n - m rollouts of each; pilot rollouts are part of
    the group. Adapted: the survivors are trained in the same step (no cross-step buffer); when fewer
    than k survive, the step fills with the piloted prompts nearest the band."""

    pilot_fraction: float = 0.25
    pilot_multiple: float = 3.0
    band: tuple[float, float] = (0.125, 0.75)

    def __post_init__(self) -> None:
        check_number(self.pilot_fraction, "pilot_fraction", minimum=0.0, maximum=1.0)
        check_number(self.pilot_multiple, "pilot_multiple", minimum=1.0)
        check_band(self.band)

    def request_sizes(self, group_size: int) -> tuple[int, ...]:
        """The rollouts per prompt this rule asks for in a round, with groups of ``group_size``."""
        return pilot_and_rest(group_size, self.pilot_fraction)

    def allocate(self, session: Session, k: int) -> AllocationResult:
        n = session.group_size
        m = pilot_size(n, self.pilot_fraction)
        offered = session.offer(min(int(np.ceil(self.pilot_multiple * k)), len(session.loop)))
        pilot = session.roll(offered.positions, m, "pilot")
        successes, trials = pilot.per_prompt()
        rates = np.divide(successes, trials, out=np.full(len(trials), np.nan), where=trials > 0)
        trained = offered.positions[_fill_order(rates, trials, self.band)[:k]]
        session.roll(trained, n - m, "commit")
        return session.result(trained)


@dataclass(frozen=True)
class SpeedScreen:
    """SPEED-RL's screening (arXiv 2506.09016): screening rounds of k offered prompts with
    ``screen_fraction`` of the group each (N_init = n/2), until k prompts have an intermediate pass
    rate (0 < p_hat < 1) or ``max_rounds`` rounds were screened; those get the remaining n - N_init
    rollouts (the screening ones are part of the group). Adapted: SPEED-RL keeps qualified prompts in
    a buffer across steps; here a step stops at k, and at the cap fills with the screened prompts whose
    rate is nearest 0.5 (all-equal groups: no advantage)."""

    screen_fraction: float = 0.5
    max_rounds: int = 10

    def __post_init__(self) -> None:
        check_number(self.screen_fraction, "screen_fraction", minimum=0.0, maximum=1.0)
        check_integer(self.max_rounds, "max_rounds", minimum=1)

    def request_sizes(self, group_size: int) -> tuple[int, ...]:
        """The rollouts per prompt this rule asks for in a round, with groups of ``group_size``."""
        return pilot_and_rest(group_size, self.screen_fraction)

    def allocate(self, session: Session, k: int) -> AllocationResult:
        n = session.group_size
        m = pilot_size(n, self.screen_fraction)
        qualified = np.zeros(0, dtype=np.int64)
        # Per screened prompt, the screen that counts: the one that qualified it, or (not qualified) its
        # latest; a prompt the stream offers again later in the step (an epoch wrap) is screened again,
        # but a qualified one keeps its qualifying screen.
        counted = np.zeros(0, dtype=np.int64)
        counted_round, counted_rate = np.zeros(0, dtype=np.int64), np.zeros(0)
        for _ in range(self.max_rounds):
            offered = session.offer(k).positions
            screen = session.roll(offered, m, "screen")
            successes, trials = screen.per_prompt()
            fresh = ~np.isin(offered, qualified)
            stays = ~np.isin(counted, offered[fresh])
            counted = np.concatenate([counted[stays], offered[fresh]])
            counted_round = np.concatenate([counted_round[stays], np.full(int(fresh.sum()), screen.request.index)])
            rates = np.divide(successes, trials, out=np.full(len(trials), np.nan), where=trials > 0)
            counted_rate = np.concatenate([counted_rate[stays], rates[fresh]])
            newly = offered[fresh & informative_groups(successes, trials)][: k - len(qualified)]
            qualified = np.concatenate([qualified, newly])
            if len(qualified) >= k:
                break
        trained = qualified
        if len(trained) < k:
            spare = ~np.isin(counted, qualified)
            judged = (~np.isnan(counted_rate[spare])).astype(np.float64)
            order = _fill_order(np.nan_to_num(counted_rate[spare], nan=0.5), judged, (0.5, 0.5))
            trained = np.concatenate([trained, counted[spare][order][: k - len(trained)]])
        commit = session.roll(trained, n - m, "commit").request.index
        # Every trained prompt was screened (qualified or filled from the screened), so it is in counted.
        screen_of = counted_round[np.argsort(counted)][np.searchsorted(np.sort(counted), trained)]
        return session.result(trained, [member[(member[:, 0] == screen) | (member[:, 0] == commit)]
                                        for member, screen in zip(session.members(trained), screen_of.tolist())])


@dataclass(frozen=True)
class ReinforceAda:
    """Reinforce-Ada (arXiv 2510.04996): ``max_rounds`` (4) rounds of ``round_size`` rollouts (default:
    the group size n) of every unfinished prompt of the k the loop offers; a prompt finishes when it
    has floor(n/2) successes and floor(n/2) failures (``exit="balanced"``) or one success
    (``"positive"``). Each group is then down-sampled to n: for a balanced prompt n/2 of each outcome,
    otherwise as balanced as the outcomes allow (successes and failures taken in rollout order, which
    is a uniform choice among exchangeable samples), topped up with rollouts without a verdict if
    too few have one. Adapted: the paper's advantage baseline uses all of a
    prompt's responses; here the group is the n kept (hosts normalise within a group)."""

    max_rounds: int = 4
    round_size: int | None = None
    exit: str = "balanced"

    def __post_init__(self) -> None:
        check_integer(self.max_rounds, "max_rounds", minimum=1)
        if self.round_size is not None:
            check_integer(self.round_size, "round_size", minimum=1)
        check_choice(self.exit, "exit", ("balanced", "positive"))

    def request_sizes(self, group_size: int) -> tuple[int, ...]:
        """The rollouts per prompt this rule asks for in a round, with groups of ``group_size``."""
        return (self.round_size or group_size,)

    def allocate(self, session: Session, k: int) -> AllocationResult:
        n = session.group_size
        if self.round_size is not None and self.round_size < n:
            raise ValueError(f"round_size = {self.round_size} < the group size {n}; a prompt that finishes in its "
                             "first round must have n rollouts to train")
        offered = session.offer(k).positions
        active = np.ones(k, dtype=bool)
        for _ in range(self.max_rounds):
            session.roll(offered[active], self.round_size or n, "round")
            successes, trials = session.step_counts(offered)
            failures = trials - successes
            done = (successes >= n // 2) & (failures >= n // 2) if self.exit == "balanced" else successes >= 1
            active = ~done
            if not active.any():
                break
        return session.result(offered, _balanced_subsets(session, session.members(offered), n))


def _balanced_subsets(session: Session, members: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Each prompt's ``members`` (g_i, 2) cut to n rollouts, in rollout order: successes up to
    max(n/2, what the failures and fractional outcomes leave), then failures, then fractional
    outcomes, then rollouts without a verdict, each taken in rollout order (a uniform choice among
    exchangeable samples). Vectorised over prompts."""
    if not members:
        return []
    sizes = np.array([len(member) for member in members], dtype=np.int64)
    rows = np.concatenate(members) if members else np.zeros((0, 2), dtype=np.int64)
    offsets = np.cumsum([0] + [len(round_.success) for round_ in session.rounds])
    success = session._success[offsets[rows[:, 0]] + rows[:, 1]]
    group = np.repeat(np.arange(len(members)), sizes)
    # outcome class per rollout: 0 success, 1 failure, 2 fractional, 3 no verdict
    kind = np.where(np.isnan(success), 3, np.where(success == 1.0, 0, np.where(success == 0.0, 1, 2)))
    counts = np.zeros((len(members), 4), dtype=np.int64)
    np.add.at(counts, (group, kind), 1)
    take = np.zeros_like(counts)
    take[:, 0] = np.minimum(counts[:, 0], np.maximum(n // 2, n - counts[:, 1] - counts[:, 2]))
    for outcome in (1, 2, 3):
        take[:, outcome] = np.minimum(counts[:, outcome], n - take[:, :outcome].sum(axis=1))
    order = np.lexsort((np.arange(len(rows)), kind, group))  # by prompt, outcome, rollout order
    key = group[order] * 4 + kind[order]
    first = np.searchsorted(key, key, "left")
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - first
    kept = rank < take[group, kind]
    return np.split(rows[kept], np.cumsum(np.bincount(group[kept], minlength=len(members)))[:-1])


@dataclass(frozen=True)
class PosteriorPilot:
    """Ours: the posterior decides who is piloted again, the pilot re-centres the estimate.

    The selector chooses k from the offered candidates (its own rule: fresh Thompson draws). Each
    chosen prompt gets ``pilot_fraction`` (half) of its group first (m rollouts; they stay in its group,
    so a pilot costs nothing unless its prompt is replaced). The pilot's evidence reaches the selector.
    A prompt whose pilot came out all equal is replaced when, under the selector's updated posterior,
    the chance z that its remaining n - m rollouts come out the same (a wasted group) is so high that
    a replacement's whole group is worth more per rollout:

        (1 - z) / (n - m)  <  (1 - z_new) / n,

    z_new the predicted chance that a replacement's group of n is all equal (the mean over the
    reserve's best k by that chance). Replacements are the selector's fresh choice among the
    candidates not yet chosen, piloted in turn, for at most ``max_rounds`` pilot rounds; then every
    kept prompt gets its remaining n - m. Where the posterior is unsure (a flat prior) a short pilot
    never moves z past the bar, and the step spends nothing beyond k * n. Needs a selector with
    ``posterior(ids)`` (Beta) or ``predict(ids)`` (point rates); with neither it never replaces.

    ``replace=False`` drops such a prompt instead (no replacement, no commit): the step trains fewer
    than k groups and spends fewer rollouts, which is where the measured value of an update (concave
    in its informative groups, ``benchmarks/update_value.py``) says the rollouts are better spent.
    Only for hosts that train a variable number of groups (the testbed, verl); TRL's batch is fixed.
    """

    # Half the group: chosen over a quarter on seeds 100-101, pool seed 777 (recurring), where a quarter
    # reached 0.24 of the exact oracle's paired gain and a half 0.81 (docs/allocation.md).
    pilot_fraction: float = 0.5
    max_rounds: int = 3
    replace: bool = True

    def __post_init__(self) -> None:
        check_number(self.pilot_fraction, "pilot_fraction", minimum=0.0, maximum=1.0)
        check_integer(self.max_rounds, "max_rounds", minimum=1)
        check_flag(self.replace, "replace")

    def request_sizes(self, group_size: int) -> tuple[int, ...]:
        """The rollouts per prompt this rule asks for in a round, with groups of ``group_size``."""
        return pilot_and_rest(group_size, self.pilot_fraction)

    def allocate(self, session: Session, k: int) -> AllocationResult:
        n = session.group_size
        m = pilot_size(n, self.pilot_fraction)
        offered = session.offer(k)
        kept = offered.positions
        reserve = offered.candidates[~np.isin(offered.candidates, kept)]
        newest = kept
        for pilot_round in range(self.max_rounds):
            session.roll(newest, m, "pilot")
            if pilot_round == self.max_rounds - 1 or len(reserve) == 0:
                break
            successes, trials = session.step_counts(kept)
            waste = _rest_all_equal_chance(session.loop, kept, successes, trials, n - m)
            if waste is None:
                break
            reference = np.sort(_group_all_equal_chance(session.loop, reserve, n))[:k].mean()
            replace = waste > 1.0 - (n - m) / n * (1.0 - reference)
            if not replace.any():
                break
            if not self.replace:
                kept = kept[~replace]
                break
            count = min(int(replace.sum()), len(reserve))
            replace[np.flatnonzero(replace)[np.argsort(-waste[replace], kind="stable")][count:]] = False
            newest = session.choose(reserve, count).positions
            reserve = reserve[~np.isin(reserve, newest)]
            kept = np.concatenate([kept[~replace], newest])
        if len(kept):
            session.roll(kept, n - m, "commit")
        return session.result(kept)


def _beta_moment(alpha: np.ndarray, beta: np.ndarray, power: int) -> np.ndarray:
    """E[p^power] for p ~ Beta(alpha, beta), float (m,): the product over i < power of
    (alpha + i) / (alpha + beta + i) for a group-sized power, the log-gamma ratio beyond."""
    alpha, beta = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    if power <= 64:
        steps = np.arange(power, dtype=np.float64)
        return np.prod((alpha[:, None] + steps) / (alpha[:, None] + beta[:, None] + steps), axis=1)
    return np.exp(log_gamma(alpha + power) - log_gamma(alpha) + log_gamma(alpha + beta)
                  - log_gamma(alpha + beta + power))


def _believed(loop: SelectionLoop, positions: np.ndarray, power: int):
    """``(E[p^power], E[(1 - p)^power])`` (m,) under the selector's belief about ``positions``, or None."""
    ids = loop.ids_at(positions)
    posterior = getattr(loop.selector, "posterior", None)
    if posterior is not None:
        alpha, beta = posterior(ids)
        return _beta_moment(alpha, beta, power), _beta_moment(beta, alpha, power)
    rates = loop.selector.predict(ids)
    if rates is None:
        return None
    rates = np.clip(np.asarray(rates, dtype=np.float64), 0.0, 1.0)
    return rates**power, (1.0 - rates) ** power


def _rest_all_equal_chance(loop, positions, successes, trials, remaining: int) -> np.ndarray | None:
    """float (m,): the chance that a prompt's next ``remaining`` rollouts all equal its pilot's one
    outcome (0 for a mixed pilot, whose group is informative already), or None (no belief)."""
    believed = _believed(loop, positions, remaining)
    if believed is None:
        return None
    all_success, all_failure = believed
    return np.where((successes == trials) & (trials > 0), all_success,
                    np.where((successes == 0) & (trials > 0), all_failure, 0.0))


def _group_all_equal_chance(loop, positions, size: int) -> np.ndarray:
    """float (m,): the predicted chance that a group of ``size`` of each prompt is all equal."""
    believed = _believed(loop, positions, size)
    return np.zeros(len(positions)) if believed is None else believed[0] + believed[1]


# By the names hosts and the bench use (``mopps.core.selection.ALLOCATION_RULES``).
RULES = {"mopps_pilot": PosteriorPilot, "pilot_commit": PilotCommit, "speed_rl": SpeedScreen,
         "reinforce_ada": ReinforceAda}


def group_size_for(rule, unit: int, most: int = 64) -> int:
    """The smallest group size n (a multiple of ``unit``, >= 2) for which every round ``rule`` asks for
    is a whole number of ``unit`` rollouts per prompt (a host that generates ``unit`` answers per
    prompt at a time, like TRL's ``num_generations``); ``ValueError`` if none up to ``most`` units."""
    unit = check_integer(unit, "unit", minimum=1)
    for units in range(1, most + 1):
        size = units * unit
        if size >= 2 and all(part >= 1 and part % unit == 0 for part in rule.request_sizes(size)):
            return size
    raise ValueError(f"no group size up to {most} x {unit} makes every round of {rule!r} a multiple of {unit}")


def check_group_size(rule, group_size: int, unit: int, name: str = "rollout_allocation_group_size") -> int:
    """``group_size`` if every round ``rule`` asks for is a multiple of ``unit`` rollouts per prompt;
    ``ValueError`` naming ``name`` otherwise."""
    group_size = check_integer(group_size, name, minimum=2)
    sizes = rule.request_sizes(group_size)
    if any(part < 1 or part % unit for part in sizes):
        raise ValueError(f"{name} = {group_size}; with it {type(rule).__name__} asks for rounds of {sizes} rollouts "
                         f"per prompt, which must be multiples of {unit} (e.g. {name} = {group_size_for(rule, unit)})")
    return group_size


def build_rule(name: str):
    """The allocation rule called ``name`` (one of ``ALLOCATION_RULES``), as its paper configures it."""
    return RULES[check_choice(name, "rollout_allocation", ALLOCATION_RULES)]()


class Allocation:
    """Rollout allocation over ``loop`` with ``rule`` (one of ``RULES``' classes, or any object with
    ``allocate(session, k)``); ``group_size``: n, the rollouts in each trained group (>= 2)."""

    def __init__(self, loop: SelectionLoop, rule, group_size: int) -> None:
        if not isinstance(loop, SelectionLoop):
            raise ValueError(f"loop is a {type(loop).__name__}; it must be a SelectionLoop")
        if not callable(getattr(rule, "allocate", None)):
            raise ValueError(f"rule is a {type(rule).__name__}; it must have allocate(session, k) "
                             f"(one of {', '.join(cls.__name__ for cls in RULES.values())})")
        self.loop, self.rule = loop, rule
        self.group_size = check_integer(group_size, "group_size", minimum=2)

    def step(self, k: int, rollout: Callable[[RolloutRequest], Any]) -> AllocationResult:
        """One training step: the rule's rounds, rolled out by ``rollout`` (module docstring), and the
        ``k`` groups to train. All rounds are one policy (one tick with ``clock="observe"``); a failed
        round undoes the whole step."""
        k = check_integer(k, "k", minimum=1)
        if k > len(self.loop):
            raise ValueError(f"k = {k} > {len(self.loop)} prompts in the dataset")
        with self.loop.atomic(), self.loop.one_policy_update():
            return self.rule.allocate(Session(self.loop, rollout, self.group_size), k)
