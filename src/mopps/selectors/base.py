"""The one protocol every prompt selector follows, and what a new selector implements.

    choice = selector.select(candidate_ids, k)     # before rollout: keep k of the candidates
    selector.update(ids, successes, trials)        # after rollout: the evidence of the rolled-out prompts
    selector.policy_updated(ticks=1)               # the policy changed (one tick per optimiser step)
    selector.state_dict() / load_state_dict(d)     # everything, RNG included
    selector.save(path) / type(selector).load(path)

``Selector`` does the boundary work once for all subclasses: it validates every input before any state
is touched (so a ``ValueError`` leaves the learned state, the RNG and the step counter exactly as they
were), normalizes ids (ints or strings), combines duplicate ids in one update, counts steps, and
serializes. A selector object holds exactly four things that change: ``state`` (its learned state,
one record of plain data), ``rng`` (its own ``numpy.random.Generator``), ``step`` (updates applied)
and ``tick`` (policy updates it was told of).

Time: ``update`` brings evidence, ``policy_updated`` says the policy moved. The two are separate
because they are not one-to-one: dynamic sampling brings several batches of evidence from one
policy, and a trainer may take several optimiser steps between two batches. Selectors whose beliefs
age with the policy (``ContextualMoPPS``, ``MoPPS(discount="auto")``) and target schedules count
time in ticks; ``SelectionLoop`` calls ``policy_updated`` for its host (see its ``clock``). A
selector that is used without a loop and never told of a policy update does not age.

Writing a selector (the subclass contract; ``mopps.testing.check_selector`` checks it):

1. The learned state is one ``typing.NamedTuple`` of numpy arrays (bool/int/float), lists of str
   (string prompt ids), JSON scalars and None. It is what ``state_dict()["arrays"]`` holds, field by
   field, and what ``save`` writes.
2. ``__init__(self, <config>, seed=0)`` validates and stores the configuration, then calls
   ``super().__init__(seed)``, which seeds ``rng`` and sets ``state = self.initial_state()``.
3. Implement
   - ``initial_state(self) -> State``: the record of a selector that has seen nothing;
   - ``_choose(self, state, kind, ids, k, rng) -> (index (k,), scores (n,), predicted (n,) or None)``:
     choose among validated, unique candidates (``kind`` "int": int64 array; "str": list of str);
     draw randomness from ``rng`` only; never modify ``state``;
   - ``_config(self) -> dict``: the JSON constructor arguments except ``seed`` (``load`` calls
     ``cls(**config)``; ``load_state_dict`` refuses a state saved with another config);
   - ``_restore(self, arrays: dict) -> State``: validate a saved record (``state_dict()["arrays"]``,
     possibly from a file or a hostile source) and build it; raise ``ValueError`` (or KeyError /
     TypeError) on anything inconsistent. It must not touch ``self``.
4. If the selector learns, implement ``_observe(self, state, kind, ids, successes, trials) -> State``:
   the record after one batch of validated, de-duplicated evidence (float (m,) arrays). It may write
   into ``state``'s arrays (the old record is not used again: the base class hands it a record no
   snapshot shares), so it must not fail half-way: do any check of your own before the first write.
   A method of your own that writes into the record in place first calls ``self._writable_state()``.
5. If the selector's beliefs change with time, implement ``_advance(self, state, ticks) -> State``:
   the record after ``ticks`` (int >= 1) policy updates without evidence (default: unchanged). The
   base class counts ``tick`` (read it as ``self.tick`` in ``_choose`` and ``_observe``); per-prompt
   times are best stored as the tick of the prompt's last update, so that aging is computed lazily.
6. Optional: an ``id_kind`` field in the record makes the base class refuse mixing int and str ids;
   ``predict(ids)`` for a point estimate of success rates.

``examples/custom_selector.py`` is a complete one in 40 lines (``MostWins``: a ``Counts(ids,
successes, trials)`` record, the highest smoothed success rate wins) that passes ``check_selector``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mopps.core.evidence import sum_by_id
from mopps.core.id_index import STR_KIND, check_same_kind, first_duplicate, normalize_ids, require_unique
from mopps.core.validation import (
    check_count,
    check_header,
    check_integer,
    check_observations,
    check_same_length,
    check_seed,
    generator_from_state,
)
from mopps.storage import load_state, save_state

STATE_FORMAT = "mopps.selector-state"
STATE_VERSION = 1


@dataclass(frozen=True)
class Selection:
    """The result of ``select``.

    ``index``: int64 (k,), positions into ``candidate_ids`` of the chosen prompts, in rank order.
    ``ids``: the chosen ids (int64 array (k,) or list of k str), ``candidate_ids[index]``.
    ``scores``: float64 (n,), aligned with ``candidate_ids``: the value the rule ranked (Thompson
    draws for MoPPS, posterior means for ``greedy_mean``, exact rates for the oracle, uniform noise
    for random rules).
    ``predicted_rate``: float64 (n,) aligned with ``candidate_ids``, the selector's point estimate of
    each candidate's success rate (posterior mean for MoPPS), or ``None`` if it keeps no estimate.
    """

    index: np.ndarray
    ids: Any
    scores: np.ndarray
    predicted_rate: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)


class NoLearnedState(NamedTuple):
    """The record of a selector that learns nothing (the oracle)."""

    @classmethod
    def restore(cls, arrays: dict[str, Any]) -> "NoLearnedState":
        """The record from saved ``arrays``, which must be empty."""
        if arrays:
            raise ValueError(f"this selector keeps no learned state, but the state has {sorted(arrays)}")
        return cls()


class SelectorSnapshot(NamedTuple):
    """What ``Selector.snapshot`` returns and ``Selector.restore`` takes back: the learned ``record``
    (shared with the selector until its next write), the generator's ``rng_state`` (a dict), ``step``
    and ``tick``."""

    record: Any
    rng_state: dict
    step: int
    tick: int


class Selector(ABC):
    """Base class of all selectors. ``seed`` seeds the selector's own ``numpy.random.Generator``
    (an integer >= 0, or None for fresh entropy); see the module docstring for the subclass contract."""

    def __init__(self, seed: int | None = 0) -> None:
        self.rng = np.random.default_rng(check_seed(seed))
        self.step = 0  # number of update() calls that applied evidence
        self.tick = 0  # number of policy updates (policy_updated ticks)
        self.state = self.initial_state()
        self._snapshots: list[SelectorSnapshot] = []  # live snapshots, not yet released

    # -- snapshots (the undo of a caller's block) ---------------------------------------------------

    def snapshot(self) -> "SelectorSnapshot":
        """The selector as it is now, for ``restore``: the learned record (shared, not copied: the
        selector copies it before its next write while a live snapshot holds it), the generator's
        state, ``step`` and ``tick``. Call ``release`` when the snapshot is no longer needed."""
        snapshot = SelectorSnapshot(self.state, self.rng.bit_generator.state, self.step, self.tick)
        self._snapshots.append(snapshot)
        return snapshot

    def restore(self, snapshot: "SelectorSnapshot") -> None:
        """Back to ``snapshot``, whole values only (record, generator state, step, tick). The snapshot
        stays live (and its record protected) until ``release``."""
        self.state = snapshot.record
        self.rng.bit_generator.state = snapshot.rng_state
        self.step, self.tick = snapshot.step, snapshot.tick

    def release(self, snapshot: "SelectorSnapshot") -> None:
        """``snapshot`` will not be restored any more: its record needs no protection from it."""
        self._snapshots = [live for live in self._snapshots if live is not snapshot]

    def _writable_state(self) -> Any:
        """The current record, copied first if a live snapshot shares it. Every method that writes
        into the record's arrays in place calls this first (``update`` and ``policy_updated`` do)."""
        if any(live.record is self.state for live in self._snapshots):
            self.state = self.state._replace(**{field: copy.copy(value) for field, value in self.state._asdict().items()})
        return self.state

    # -- the protocol ----------------------------------------------------------------------------

    def select(self, candidate_ids, k: int) -> Selection:
        """Keep ``k`` of ``candidate_ids`` (unique ints >= 0 or strings) for rollout."""
        kind, ids = self._normalize_candidates(candidate_ids)
        k = check_count(k, len(ids))
        index, scores, predicted = self._choose(self.state, kind, ids, k, self.rng)
        chosen = [ids[position] for position in index] if kind == STR_KIND else ids[index]
        return Selection(index=index, ids=chosen, scores=scores, predicted_rate=predicted)

    def update(self, ids, successes, trials) -> None:
        """Record one rollout batch: per prompt, ``successes`` out of ``trials`` rollouts.

        ``ids``: (m,) prompt ids; ``successes``: float (m,), 0 <= successes <= trials (fractional
        allowed: mean reward in [0, 1] times trials); ``trials``: float (m,) >= 1, may differ per
        prompt. A prompt that appears several times is combined into one observation with summed
        successes and trials (so the discount is applied once for that step, not once per row).
        An empty batch changes nothing (not even ``step``).
        """
        kind, normalized = normalize_ids(ids, "ids")
        successes, trials = check_observations(successes, trials)
        check_same_length(ids=normalized, successes=successes)
        self._check_kind(kind, "ids")
        if kind is None:
            return
        if first_duplicate(kind, normalized) >= 0:
            normalized, (successes, trials) = sum_by_id(kind, normalized, successes, trials)
        self.state = self._observe(self._writable_state(), kind, normalized, successes, trials)
        self.step += 1

    def policy_updated(self, ticks: int = 1) -> None:
        """The policy the prompts are rolled out with was updated ``ticks`` times (int >= 1) since the
        last call: one tick per optimiser step, however many ``update`` calls it spans. Selectors that
        do not age ignore it (the counter ``tick`` still moves and is saved)."""
        ticks = check_integer(ticks, "ticks", minimum=1)
        self.state = self._advance(self._writable_state(), ticks)
        self.tick += ticks

    def predict(self, ids) -> np.ndarray | None:
        """Point estimate of each id's success rate, float64 (m,), or None if the selector has none."""
        return None

    # -- the subclass contract (see the module docstring) ------------------------------------------

    @abstractmethod
    def initial_state(self) -> Any:
        """The learned-state record (a NamedTuple) of a selector that has seen nothing."""

    @abstractmethod
    def _choose(self, state, kind, ids, k: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return ``(index (k,), scores (n,), predicted_rate (n,) or None)`` for validated input."""

    def _observe(self, state, kind, ids, successes: np.ndarray, trials: np.ndarray):
        """The record after validated, de-duplicated evidence. Selectors that do not learn keep this."""
        return state

    def _advance(self, state, ticks: int):
        """The record after ``ticks`` policy updates without evidence (``self.tick`` is still the tick
        before them). Selectors whose beliefs do not age keep this."""
        return state

    def _check_kind(self, kind, name: str) -> None:
        """Raise if ``kind`` of ids cannot be mixed with what the selector holds. A record with an
        ``id_kind`` field ("int", "str" or None before any id) fixes one kind per selector; a record
        without one takes anything."""
        check_same_kind(kind, getattr(self.state, "id_kind", None), name)

    def _config(self) -> dict[str, Any]:
        """JSON-serializable constructor arguments (without ``seed``)."""
        return {}

    @abstractmethod
    def _restore(self, arrays: dict[str, Any]) -> Any:
        """The record saved as ``arrays`` (``state_dict()["arrays"]``), validated; must not touch self."""

    # -- state -------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: config, the learned record (copied, field by
        field), RNG state, step and tick counters."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "selector": type(self).__name__,
            "config": self._config(),
            "step": self.step,
            "tick": self.tick,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
            "arrays": {field: copy.copy(value) for field, value in self.state._asdict().items()},
        }

    def load_state_dict(self, state: dict[str, Any], name: str = "state") -> None:
        """Replace this selector's state with ``state``. Everything is validated before anything is
        assigned: on a ``ValueError`` (another selector class, format version or config, a bad RNG
        state, step or array) the selector is exactly as it was. ``name``: how errors call ``state``
        (``SelectionLoop`` passes ``"state['selector']"``)."""
        check_state_header(state, type(self).__name__, name)
        if state["config"] != self._config():
            raise ValueError(
                f"{name}['config'] = {state['config']} differs from this selector's config "
                f"{self._config()}; build the selector with the saved config (or use {type(self).__name__}.load)"
            )
        step = check_integer(state["step"], f"{name}['step']")
        # States saved before ticks existed counted time in updates (ContextualMoPPS aged per update).
        tick = check_integer(state.get("tick", step), f"{name}['tick']")
        rng = generator_from_state(state["rng"], f"{name}['rng']")
        if not isinstance(state["arrays"], dict):
            raise ValueError(f"{name}['arrays'] must be a dict")
        try:
            record = self._restore(state["arrays"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{name}['arrays'] is invalid: {error}") from None
        self.state, self.rng, self.step, self.tick = record, rng, step, tick

    def save(self, path) -> None:
        """Write the state atomically to ``path`` (see ``mopps.storage``)."""
        save_state(self.state_dict(), path)

    @classmethod
    def load(cls, path, **kwargs):
        """Build a selector from a file written by ``save``; ``kwargs`` supply what cannot be saved
        (e.g. the oracle's success-rate function)."""
        state = load_state(path, what="selector state")
        try:
            check_state_header(state, cls.__name__)
            try:
                selector = cls(**state["config"], **kwargs)
            except TypeError as error:
                raise ValueError(
                    f"the saved config {state['config']} does not fit {cls.__name__} of this mopps version ({error})"
                ) from None
            selector.load_state_dict(state)
        except ValueError as error:
            # The file was read but holds no state this class can take: say which file.
            raise ValueError(f"{path}: {error}") from None
        return selector

    # -- helpers -----------------------------------------------------------------------------------

    def _normalize_candidates(self, candidate_ids):
        kind, ids = normalize_ids(candidate_ids, "candidate_ids")
        self._check_kind(kind, "candidate_ids")
        require_unique(kind, ids, lambda position: f"candidate_ids[{position}]")
        return kind, ids


def check_state_header(state: dict[str, Any], class_name: str, name: str = "state") -> None:
    """Raise ``ValueError`` unless ``state`` is a selector state of ``class_name`` we can read
    (``name``: how errors call it)."""
    check_header(state, STATE_FORMAT, (STATE_VERSION,), "selector state", name,
                 keys=("config", "step", "rng", "arrays"))
    if state.get("selector") != class_name:
        raise ValueError(f"{name} was saved by {state.get('selector')}, not {class_name}")
