"""``SelectionLoop``: the one select -> roll out -> learn loop every host drives.

    loop = SelectionLoop(MoPPS(seed=0), prompt_ids, rule=SuccessRule("threshold", 1.0), ts_ratio=8, seed=0)
    batch = loop.next(k)                          # dataset positions, ids, prediction of each, step
    metrics = loop.observe(prompt_ids, rewards)   # flat per-rollout records, any order; mopps/* metrics
    loop.policy_updated()                         # after each optimiser step (clock="host" only)
    host_checkpoint["mopps"] = loop.state_dict()  # everything a host saves (or loop.save(path))

The loop owns the candidate stream (``CandidateStream``, epochs with a dropped tail), the selector,
the success rule, the ledger of predictions (``PredictionLedger``) and the metrics; a host only
translates its rows and rewards. Randomness: the selector draws from its own generator (seeded by
whoever built it); candidates come from ``SeedSequence(seed)``'s child 0 (``spawn_key=(0, epoch)``),
so the two streams are independent even when both use the same integer seed.

Time: the selector is told of each policy update (``Selector.policy_updated``, one tick). With
``clock="observe"`` (the default) the loop assumes one policy update per ``observe`` that taught the
selector and ticks after it, except inside ``one_policy_update()`` (``Refill.fill`` rolls out all its
rounds with one policy, so it ticks once). With ``clock="host"`` the host calls
``loop.policy_updated()`` once per optimiser step and ``observe`` never ticks (the TRL and verl
adapters do this: one generation may span several optimiser steps).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from mopps.core.evidence import SuccessRule, group_rollouts, select_ids
from mopps.core.id_index import STR_KIND, IdIndex, normalize_ids, require_unique
from mopps.core.metrics import GROUP_KEYS, PREDICTION_KEYS, group_metrics, prediction_metrics
from mopps.core.validation import (
    as_feature_matrix,
    check_choice,
    check_flag,
    check_header,
    check_integer,
    check_number,
    check_positions,
    check_same_length,
)
from mopps.loop.evidence_log import EvidenceLog
from mopps.loop.ledger import PredictionLedger
from mopps.loop.stream import CandidateStream
from mopps.selectors.base import Selection, Selector
from mopps.storage import load_state, save_state

LOOP_STATE_FORMAT = "mopps.loop-state"
LOOP_STATE_VERSION = 1
CANDIDATE_STREAM = 0  # child of SeedSequence(seed) that orders the candidates
# Metrics that count since the run began: a host that averages metrics over a window or over the
# rounds of a refill logs their latest value instead.
RUNNING_TOTALS = ("mopps/cumulative_rollouts",)
CLOCKS = ("observe", "host")  # who tells the selector that the policy was updated


@dataclass(frozen=True)
class Batch:
    """What ``SelectionLoop.next(k)`` chose.

    ``positions``: int64 (k,), dataset rows of the chosen prompts, in the selector's rank order.
    ``ids``: their prompt ids (int64 array (k,) or list of k str).
    ``predicted_rate``: float64 (k,), the selector's predicted success rate of each, or None.
    ``step``: this batch's number, 1, 2, ... (one per ``next`` or ``choose_among`` call).
    ``candidates``: int64 (n,), the dataset rows offered to the selector (n = round(ts_ratio * k),
    at most the dataset size); ``selection``: the selector's answer over them (``selection.index``
    indexes ``candidates``; ``scores`` and ``predicted_rate`` are (n,)).
    """

    positions: np.ndarray
    ids: Any
    predicted_rate: np.ndarray | None
    step: int
    candidates: np.ndarray
    selection: Selection

    def __len__(self) -> int:
        return len(self.positions)

    def metrics(self) -> dict[str, float]:
        """``mopps/candidates`` and ``mopps/selected`` of this batch."""
        return {"mopps/candidates": float(len(self.candidates)), "mopps/selected": float(len(self.positions))}


@dataclass(frozen=True)
class Evidence:
    """Per-prompt evidence of one ``observe`` call: ``ids`` (m,) the distinct prompts (sorted),
    ``successes`` and ``trials`` float (m,), counted over rollouts with a verdict only (a prompt whose
    rollouts all lacked a verdict has trials 0), ``rollouts_without_verdict`` int."""

    kind: str | None
    ids: Any
    successes: np.ndarray
    trials: np.ndarray
    rollouts_without_verdict: int


class SelectionLoop:
    """The selection loop over one dataset.

    ``selector``: any ``mopps.Selector``. ``prompt_ids``: the prompt id of each dataset row, (N,)
    unique ints >= 0 or strings (row positions: ``np.arange(N)``). ``rule``: the ``SuccessRule``
    that judges one rollout's reward. ``ts_ratio``: float >= 1, candidates per chosen prompt
    (``round(ts_ratio * k)`` per ``next(k)``, at most N; 1 = the selector sees exactly k). ``seed``:
    int >= 0, orders the candidates (give every process the same). ``learn``: False keeps the
    selector's posterior as it is (predictions are still logged; the reference's ``bandit_no_update``),
    and then the selector is not told of policy updates either. ``clock``: ``"observe"`` (one policy
    update per ``observe`` that taught the selector, one per ``one_policy_update`` block) or
    ``"host"`` (only ``policy_updated()`` ticks); see the module docstring.
    ``evidence_log``: a ``mopps.loop.EvidenceLog`` that records every selection and every piece of
    evidence (for ``mopps replay``), or None; the host calls its ``flush`` (e.g. at checkpoints).
    """

    def __init__(self, selector: Selector, prompt_ids, rule: SuccessRule = SuccessRule(), ts_ratio: float = 1.0,
                 seed: int = 0, learn: bool = True, clock: str = "observe",
                 evidence_log: EvidenceLog | None = None) -> None:
        if not isinstance(selector, Selector):
            raise ValueError(f"selector is a {type(selector).__name__}; it must be a mopps.Selector")
        if not isinstance(rule, SuccessRule):
            raise ValueError(f"rule is a {type(rule).__name__}; it must be a mopps.SuccessRule")
        kind, ids = normalize_ids(prompt_ids, "prompt_ids")
        if kind is None:
            raise ValueError("prompt_ids is empty; the loop needs at least one prompt")
        require_unique(kind, ids, lambda position: f"prompt_ids[{position}]")
        ts_ratio = check_number(ts_ratio, "ts_ratio", minimum=1.0)
        learn = check_flag(learn, "learn")
        clock = check_choice(clock, "clock", CLOCKS)
        if evidence_log is not None and not isinstance(evidence_log, EvidenceLog):
            raise ValueError(f"evidence_log is a {type(evidence_log).__name__}; it must be a mopps.loop.EvidenceLog or None")
        self.evidence_log = evidence_log
        self.selector = selector
        self.clock = clock
        self._open_updates = 0  # nesting depth of one_policy_update blocks
        self._taught_in_update = False  # evidence taught the selector inside the open block
        self.rule = rule
        self.ts_ratio = ts_ratio
        self.seed = check_integer(seed, "seed")
        self.learn = learn
        self.id_kind = kind
        self.prompt_ids = ids
        self._row_of_id = IdIndex.from_ids(kind, ids)
        self._fingerprint = _fingerprint(kind, ids)
        self.stream = CandidateStream(len(ids), self.seed, stream_key=CANDIDATE_STREAM)
        self.ledger = PredictionLedger()
        self.step = 0  # batches chosen
        self.rollouts = 0  # rollouts with a verdict that reached the loop
        self.rollouts_without_verdict = 0

    def __len__(self) -> int:
        """Number of prompts in the dataset."""
        return len(self.prompt_ids)

    @property
    def tick(self) -> int:
        """Policy updates the selector was told of (``selector.tick``; saved with it)."""
        return self.selector.tick

    # -- time --------------------------------------------------------------------------------------

    def policy_updated(self, ticks: int = 1) -> None:
        """The policy was updated ``ticks`` times (int >= 1; one per optimiser step) since the last
        call. Only with ``clock="host"`` (with ``"observe"`` the loop ticks itself and a second
        clock would count each update twice); ignored with ``learn=False``."""
        if self.clock != "host":
            raise ValueError(f"policy_updated() is for a loop with clock='host'; this loop has clock = "
                             f"{self.clock!r} and ticks once per observe itself")
        ticks = check_integer(ticks, "ticks", minimum=1)
        if self.learn:
            self.selector.policy_updated(ticks)

    @contextmanager
    def one_policy_update(self) -> Iterator[None]:
        """Evidence observed inside comes from one policy: with ``clock="observe"`` the loop ticks
        once when the (outermost) block ends, if any of it taught the selector, instead of after each
        ``observe``. ``Refill.fill`` runs its rounds inside one. With ``clock="host"`` it changes nothing."""
        self._open_updates += 1
        try:
            yield
        finally:
            self._open_updates -= 1
            if self._open_updates == 0 and self._taught_in_update:
                self._taught_in_update = False
                self.selector.policy_updated()

    # -- choosing --------------------------------------------------------------------------------

    def next(self, k: int) -> Batch:
        """Choose the next ``k`` prompts (1 <= k <= dataset size) before they are rolled out."""
        k = check_integer(k, "k", minimum=1)
        if k > len(self):
            raise ValueError(f"k = {k} > {len(self)} prompts in the dataset")
        if self.evidence_log is not None:
            self.evidence_log.require_next_step(self.step + 1)
        # A selector that fails (e.g. an oracle's rate function) must not cost the stream a batch.
        with self.atomic():
            candidates = self.stream.next(min(int(round(self.ts_ratio * k)), len(self)))
            return self._choose(candidates, k)

    def choose_among(self, positions, k: int) -> Batch:
        """Choose ``k`` of the dataset rows ``positions`` (distinct ints in [0, N)) without drawing
        from the candidate stream: a second choice among prompts the loop offered earlier in the same
        step (``mopps.loop.Allocation`` chooses whom to train after a pilot this way). Like ``next``
        it opens a prediction per chosen prompt and counts a step (a ``Batch`` of its own)."""
        k = check_integer(k, "k", minimum=1)
        positions = check_positions(positions, "positions", len(self))
        if k > len(positions):
            raise ValueError(f"k = {k} > {len(positions)} positions to choose among")
        if self.evidence_log is not None:
            self.evidence_log.require_next_step(self.step + 1)
        with self.atomic():
            return self._choose(positions, k)

    def _choose(self, candidates: np.ndarray, k: int) -> Batch:
        """The selector's choice of ``k`` among the dataset rows ``candidates`` (checked), recorded."""
        selection = self.selector.select(self.ids_at(candidates), k)
        positions = candidates[selection.index]
        predicted = None if selection.predicted_rate is None else selection.predicted_rate[selection.index]
        self.step += 1
        self.ledger.record(self.id_kind, selection.ids, predicted, self.step)
        if self.evidence_log is not None:
            self.evidence_log.record_selection(self.step, self.ids_at(candidates), selection.index,
                                               selection.predicted_rate, self.selector.tick)
        return Batch(positions, selection.ids, predicted, self.step, candidates, selection)

    def ids_at(self, positions) -> Any:
        """Prompt ids of dataset rows ``positions`` (int array): int64 array or list of str."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.id_kind == STR_KIND:
            return [self.prompt_ids[position] for position in positions.tolist()]
        return self.prompt_ids[positions]

    # -- learning --------------------------------------------------------------------------------

    def observe(self, prompt_ids, rewards, has_verdict=None) -> dict[str, float]:
        """Learn from finished rollouts and return this call's ``mopps/*`` metrics.

        ``prompt_ids``: (r,) the prompt of each rollout (dataset ids), any order and grouping, from
        any earlier step; ``rewards``: float (r,), one per rollout, judged by the loop's rule;
        ``has_verdict``: optional (r,), bools or exact 1/0 numbers (``mopps.core.evidence.as_verdict_mask``,
        as ``compute_score`` reports them); False marks a rollout without evidence (a reward
        timeout): it is dropped (its reward may be NaN), and a prompt none of whose rollouts has a
        verdict does not update the selector. Per prompt, trials = its rollouts WITH a verdict.
        Each prompt settles its oldest open prediction (see ``PredictionLedger``). Raises
        ``ValueError`` naming the argument and position; then nothing changed.
        """
        return self.apply(self.evidence(prompt_ids, rewards, has_verdict))

    def apply(self, evidence: Evidence) -> dict[str, float]:
        """Learn from ``evidence`` made by ``evidence(...)`` of this loop (``observe`` is
        ``apply(evidence(...))``; ``Refill`` needs the evidence too) and return the metrics."""
        judged = evidence.trials > 0
        if self.learn and judged.any():
            judged_ids = select_ids(evidence.kind, evidence.ids, judged)
            self.selector.update(judged_ids, evidence.successes[judged], evidence.trials[judged])
            if self.clock == "observe":
                if self._open_updates:
                    self._taught_in_update = True
                else:
                    self.selector.policy_updated()
        found, predicted, chosen_step = self.ledger.settle(evidence.kind, evidence.ids)
        if self.evidence_log is not None and judged.any():
            self.evidence_log.record_outcomes(np.where(found, chosen_step, self.step)[judged],
                                              select_ids(evidence.kind, evidence.ids, judged),
                                              evidence.successes[judged], evidence.trials[judged], self.step,
                                              chosen=found[judged])
        self.rollouts += int(evidence.trials.sum())
        self.rollouts_without_verdict += evidence.rollouts_without_verdict
        return self._metrics(evidence, judged, found, predicted, chosen_step)

    def evidence(self, prompt_ids, rewards, has_verdict=None) -> Evidence:
        """Per-prompt evidence of flat rollout records (the validation of ``observe``, no state change)."""
        kind, ids = normalize_ids(prompt_ids, "prompt_ids")
        if kind is not None and kind != self.id_kind:
            raise ValueError(f"prompt_ids holds {kind} ids but the dataset's prompt ids are {self.id_kind}")
        rows = self._row_of_id.find(kind, ids)
        if (rows < 0).any():
            position = int(np.argmax(rows < 0))
            raise ValueError(f"prompt_ids[{position}] = {_shown(ids[position])} is not a prompt of this loop's dataset")
        # The same grouping as ``aggregate_rollouts``, but prompts none of whose rollouts has a
        # verdict are kept (trials 0): they close their open predictions without teaching anything.
        unique_ids, summed, trials, without_verdict = group_rollouts(kind, ids, rewards, self.rule, has_verdict)
        return Evidence(kind, unique_ids, summed, trials, without_verdict)

    def add_features(self, ids, features) -> bool:
        """Hand a feature row per prompt (``ids`` (m,) dataset ids, ``features`` float (m, d)) to the
        selector if it takes features (has ``add_features``); returns whether it did. The loop keeps
        no copy: a selector that uses features keeps them in its own state. The features are checked
        (finite, one row per id) whether or not the selector takes them, so a bad feature pipeline
        shows before a selector that would use them is swapped in."""
        kind, normalized = normalize_ids(ids, "ids")
        features = as_feature_matrix(features, "features")
        check_same_length(ids=normalized, features=features)
        rows = self._row_of_id.find(kind, normalized) if kind == self.id_kind else np.full(len(normalized), -1)
        if kind is not None and (rows < 0).any():
            position = int(np.argmax(rows < 0))
            raise ValueError(f"ids[{position}] = {_shown(normalized[position])} is not a prompt of this loop's dataset")
        add = getattr(self.selector, "add_features", None)
        if add is None:
            return False
        add(normalized, features)
        return True

    def _metrics(self, evidence: Evidence, judged, found, predicted, chosen_step) -> dict[str, float]:
        metrics = {
            "mopps/observed_groups": float(judged.sum()),
            "mopps/rollouts": float(evidence.trials.sum()),
            "mopps/rollouts_without_verdict": float(evidence.rollouts_without_verdict),
            "mopps/unpredicted_groups": float((~found).sum()),
            "mopps/open_predictions": float(len(self.ledger)),
            # Every rollout that reached the loop since the run began (saved with the state): the cost axis
            # on which runs with and without dynamic sampling compare.
            "mopps/cumulative_rollouts": float(self.rollouts + self.rollouts_without_verdict),
        }
        if found.any():
            # Steps chosen after the settled ones: 0 when evidence comes back before the next choice.
            metrics["mopps/lag"] = float(np.mean(self.step - chosen_step[found]))
        if judged.any():
            report = group_metrics(evidence.successes[judged], evidence.trials[judged])
            metrics.update({f"mopps/{name}": report[name] for name in GROUP_KEYS})
        scored = judged & found & ~np.isnan(predicted)
        if scored.any():
            report = prediction_metrics(predicted[scored], evidence.successes[scored], evidence.trials[scored])
            metrics.update({f"mopps/{name}": report[name] for name in PREDICTION_KEYS})
        return metrics

    # -- undo ------------------------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A block whose changes to the loop are all undone if it raises: everything ``state_dict()``
        holds (step, counters, candidate stream, open predictions, the selector's record, generator
        and step) is as before the block, and the exception propagates.

            with loop.atomic():
                batch = loop.next(k)
                records = rollout(batch)          # a failed rollout costs the loop nothing
                loop.observe(*records)

        Blocks nest (an inner block that raises undoes its own part). Covered are changes made
        through the loop (``next``, ``observe``/``apply``, ``add_features``, ``load_state_dict``)
        and through the selector's own methods. Cheap when nothing is learned inside: the selector
        copies its record only before it writes into it while a block's snapshot holds it
        (``Selector.snapshot``).
        """
        mark = _Mark(self)
        try:
            yield
        except BaseException:
            mark.rewind(self)
            raise
        finally:
            self.selector.release(mark.selector)

    # -- state -----------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The loop's settings as JSON (a saved state must match them)."""
        return {"ts_ratio": self.ts_ratio, "seed": self.seed, "learn": self.learn, "clock": self.clock,
                "rule": {"kind": self.rule.kind, "threshold": float(self.rule.threshold)},
                "num_prompts": len(self), "prompt_ids_sha1": self._fingerprint}

    def state_dict(self) -> dict[str, Any]:
        """All a host saves: config, counters, stream position, open predictions, the selector."""
        return {
            "format": LOOP_STATE_FORMAT,
            "version": LOOP_STATE_VERSION,
            "config": self.config(),
            "step": self.step,
            "rollouts": self.rollouts,
            "rollouts_without_verdict": self.rollouts_without_verdict,
            "stream": self.stream.state_dict(),
            "ledger": self.ledger.state_dict(),
            "selector": self.selector.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``. Everything is validated first: on ``ValueError`` (another format,
        settings, dataset or selector; a damaged entry) the loop and its selector are unchanged."""
        check_header(state, LOOP_STATE_FORMAT, (LOOP_STATE_VERSION,), "loop state",
                     keys=("config", "step", "rollouts", "rollouts_without_verdict", "stream", "ledger", "selector"))
        saved = state["config"]
        if isinstance(saved, dict):
            saved = {"clock": "observe", **saved}  # loops saved before the clock existed ticked per observe
        for key, value in self.config().items():
            if not isinstance(saved, dict) or saved.get(key) != value:
                shown = saved.get(key) if isinstance(saved, dict) else saved
                raise ValueError(f"the saved loop has {key} = {shown!r} but this one has {value!r}; resume with the "
                                 "same dataset, rule, ts_ratio, seed, learn and clock")
        step = check_integer(state["step"], "state['step']")
        rollouts = check_integer(state["rollouts"], "state['rollouts']")
        without_verdict = check_integer(state["rollouts_without_verdict"], "state['rollouts_without_verdict']")
        epoch, offset = self.stream.checked_position(state["stream"])
        try:
            ledger = PredictionLedger.checked(state["ledger"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"state['ledger'] is invalid: {error}") from None
        if ledger.id_kind not in (None, self.id_kind) or (len(ledger) and ledger.step.max() > step):
            raise ValueError("state['ledger'] holds predictions of other ids or of later steps than state['step']")
        # Validates everything before it changes anything.
        self.selector.load_state_dict(state["selector"], name="state['selector']")
        self.stream.epoch, self.stream.offset = epoch, offset
        self.ledger = ledger
        self.step, self.rollouts, self.rollouts_without_verdict = step, rollouts, without_verdict
        if self.evidence_log is not None:
            self.evidence_log.truncate_after(step)  # the steps after the checkpoint are redone

    def save(self, path) -> None:
        """Write ``state_dict()`` atomically to ``path`` (``mopps.storage``)."""
        save_state(self.state_dict(), path)

    def load(self, path) -> None:
        """Continue from a file written by ``save`` (validated like ``load_state_dict``; every
        ``ValueError`` names the file)."""
        state = load_state(path, what="loop state")
        try:
            self.load_state_dict(state)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


class _Mark:
    """The loop as an ``atomic`` block found it, as whole values: counters, stream position, the
    ledger's entries, the selector's snapshot (``Selector.snapshot``: record, generator, step, tick;
    the selector copies its record before writing while the snapshot holds it) and the evidence log's
    mark. ``rewind`` puts them back; nothing here knows a selector's insides."""

    def __init__(self, loop: SelectionLoop) -> None:
        self.counters = (loop.step, loop.rollouts, loop.rollouts_without_verdict)
        self.stream_position = (loop.stream.epoch, loop.stream.offset)
        self.ledger = loop.ledger
        self.ledger_entries = loop.ledger.entries()
        self.selector = loop.selector.snapshot()
        self.taught_in_update = loop._taught_in_update
        # Not part of the state but kept in step with it: the rows the log held.
        self.log_mark = None if loop.evidence_log is None else loop.evidence_log.mark()

    def rewind(self, loop: SelectionLoop) -> None:
        loop.step, loop.rollouts, loop.rollouts_without_verdict = self.counters
        loop.stream.epoch, loop.stream.offset = self.stream_position
        loop.ledger = self.ledger
        loop.ledger.restore_entries(self.ledger_entries)
        loop.selector.restore(self.selector)
        loop._taught_in_update = self.taught_in_update
        if self.log_mark is not None:
            loop.evidence_log.rewind(self.log_mark)


def _shown(prompt_id) -> str:
    """An id as a message shows it: ``17`` or ``'math/17'``."""
    return repr(prompt_id) if isinstance(prompt_id, str) else str(int(prompt_id))


def _fingerprint(kind: str, ids) -> str:
    """SHA-1 of the dataset's prompt ids in order: a resumed loop must see the same dataset."""
    digest = hashlib.sha1(kind.encode())
    if kind == STR_KIND:
        digest.update("\0".join(ids).encode("utf-8", "surrogatepass"))
    else:
        digest.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    return digest.hexdigest()
