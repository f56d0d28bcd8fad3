"""Per-prompt Beta posteriors as plain data (``PosteriorState``) and the pure functions over them.

A ``PosteriorState`` is a record of aligned arrays in slot order (slot = order of first insertion):
ids, alpha, beta and optional per-prompt priors. Entries are created when a prompt is first observed
(or given an offline prior); a prompt never observed reports the prior. Id -> slot look-ups go
through an ``IdLookup``, a cache derived from the record's ids (never saved).

Memory: 24 bytes per prompt for (id, alpha, beta), 16 more once any per-prompt prior is set, 8 more
with learned forgetting (the tick of the last evidence), plus the look-up (4 bytes per id value
below the largest id for dense int ids, else 16 per prompt).

Ownership: an update function may write into the arrays of the record it is given and returns the
record to use afterwards; the given record must not be used again (as a donated buffer). Callers
validate the evidence first, so an update cannot stop half-way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mopps.core.drift import drift_discount, drift_variance, exposure, innovation_excess
from mopps.core.id_index import STR_KIND, IdLookup
from mopps.core.posterior import discounted_update


class PosteriorState(NamedTuple):
    """Learned state of per-prompt Beta posteriors (all arrays (n,), n = prompts with an entry).

    ``id_kind``: "int", "str", or None while empty. ``ids``: int64 array or list of str, unique.
    ``alpha``, ``beta``: float64, > 0. ``prompt_prior_alpha``, ``prompt_prior_beta``: float64 per-prompt
    priors the discount pulls toward (set by an offline prior with ``as_prior``), or None when every
    prompt uses the scalar prior of the config.
    """

    id_kind: str | None
    ids: Any
    alpha: np.ndarray
    beta: np.ndarray
    prompt_prior_alpha: np.ndarray | None = None
    prompt_prior_beta: np.ndarray | None = None
    last_tick: np.ndarray | None = None
    drift_excess: float | None = None
    drift_gaps: float | None = None


def empty_posteriors(tracked: bool = False) -> PosteriorState:
    """The record of a table that knows no prompt; ``tracked``: with the learned-forgetting fields."""
    if not tracked:
        return PosteriorState(None, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
    return PosteriorState(None, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0),
                          last_tick=np.zeros(0, dtype=np.int64), drift_excess=0.0, drift_gaps=0.0)


def gather(state: PosteriorState, lookup: IdLookup, kind, ids, prior_alpha: float,
           prior_beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, beta)`` float arrays (m,) for normalized ``ids``; unknown ids get the scalar prior."""
    if kind is None or state.id_kind is None:
        return np.full(len(ids), prior_alpha), np.full(len(ids), prior_beta)
    slots = lookup.index(state.id_kind, state.ids).find(kind, ids)
    if len(slots) and slots.min() >= 0:
        return np.take(state.alpha, slots), np.take(state.beta, slots)
    known = slots >= 0
    safe = np.where(known, slots, 0)
    return (np.where(known, state.alpha[safe], prior_alpha),
            np.where(known, state.beta[safe], prior_beta))


def slots_of(state: PosteriorState, lookup: IdLookup, kind, ids) -> np.ndarray:
    """Slots (m,) of normalized ``ids`` in ``state`` (-1: no entry)."""
    if kind is None or state.id_kind is None:
        return np.full(len(ids), -1, dtype=np.int64)
    return lookup.index(state.id_kind, state.ids).find(kind, ids)


def gather_aged(state: PosteriorState, lookup: IdLookup, kind, ids, tick: int, prior_alpha: float,
                prior_beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Like ``gather``, for a tracked record, with each posterior aged by the learned drift over the
    ticks since its last evidence (``mopps.core.drift``): the belief at ``tick``."""
    alpha, beta = gather(state, lookup, kind, ids, prior_alpha, prior_beta)
    slots = slots_of(state, lookup, kind, ids)
    known = slots >= 0
    if not known.any():
        return alpha, beta
    safe = np.where(known, slots, 0)
    last = np.take(state.last_tick, safe)
    elapsed = np.where(known & (last >= 0), tick - last, 0)
    pull_alpha, pull_beta = _pull(state, safe, prior_alpha, prior_beta)
    keep = drift_discount(alpha, beta, elapsed, drift_variance(state.drift_excess, state.drift_gaps),
                          pull_alpha, pull_beta)
    return keep * alpha + (1.0 - keep) * pull_alpha, keep * beta + (1.0 - keep) * pull_beta


def _pull(state: PosteriorState, slots: np.ndarray, prior_alpha: float, prior_beta: float):
    """The prior each slot's discount pulls toward: its own, or the scalar one."""
    if state.prompt_prior_alpha is None:
        return prior_alpha, prior_beta
    return state.prompt_prior_alpha[slots], state.prompt_prior_beta[slots]


def observe_tracked(state: PosteriorState, lookup: IdLookup, kind, ids, successes: np.ndarray,
                    trials: np.ndarray, tick: int, prior_alpha: float, prior_beta: float) -> PosteriorState:
    """The record after evidence at policy ``tick`` with learned forgetting: each posterior is aged
    over the ticks since its last evidence (discount from the drift learned so far), then the
    evidence is added; revisits at least one tick after the last evidence add their surprise against
    the stored posterior to the drift sums. Consumes ``state`` (see the module note)."""
    state, slots = _with_entries(state, lookup, kind, ids, prior_alpha, prior_beta)
    pull_alpha, pull_beta = _pull(state, slots, prior_alpha, prior_beta)
    last = state.last_tick[slots]
    seen = last >= 0
    elapsed = np.where(seen, tick - last, 0)
    alpha, beta = state.alpha[slots], state.beta[slots]
    keep = drift_discount(alpha, beta, elapsed, drift_variance(state.drift_excess, state.drift_gaps),
                          pull_alpha, pull_beta)
    revisit = seen & (elapsed >= 1) & (trials >= 2.0)
    excess = innovation_excess(alpha[revisit], beta[revisit], successes[revisit], trials[revisit])
    state.alpha[slots], state.beta[slots] = discounted_update(alpha, beta, successes, trials, keep, pull_alpha,
                                                              pull_beta)
    state.last_tick[slots] = tick
    return state._replace(drift_excess=float(state.drift_excess + excess.sum()),
                          drift_gaps=float(state.drift_gaps + exposure(alpha[revisit], beta[revisit],
                                                                       elapsed[revisit]).sum()))


def _with_entries(state: PosteriorState, lookup: IdLookup, kind, ids, prior_alpha: float,
                  prior_beta: float) -> tuple[PosteriorState, np.ndarray]:
    """``state`` with an entry (at the prior) for every unknown id of ``ids``, and the slots of ``ids``."""
    slots, ids_after, n_new = lookup.extend_ids(kind, state.ids, ids)
    if n_new == 0:
        return state, slots

    def grown(values: np.ndarray | None, fill: float) -> np.ndarray | None:
        return None if values is None else np.concatenate([values, np.full(n_new, fill, dtype=values.dtype)])

    return state._replace(
        id_kind=kind, ids=ids_after, alpha=grown(state.alpha, prior_alpha), beta=grown(state.beta, prior_beta),
        prompt_prior_alpha=grown(state.prompt_prior_alpha, prior_alpha),
        prompt_prior_beta=grown(state.prompt_prior_beta, prior_beta),
        last_tick=grown(state.last_tick, -1),
    ), slots


def observe(state: PosteriorState, lookup: IdLookup, kind, ids, successes: np.ndarray, trials: np.ndarray,
            discount: float, prior_alpha: float, prior_beta: float) -> PosteriorState:
    """The record after the discounted update of unique, normalized ``ids`` with validated evidence
    (``successes``, ``trials``: float (m,)). Consumes ``state`` (see the module note)."""
    state, slots = _with_entries(state, lookup, kind, ids, prior_alpha, prior_beta)
    if state.prompt_prior_alpha is None:
        pull_alpha, pull_beta = prior_alpha, prior_beta
    else:
        pull_alpha, pull_beta = state.prompt_prior_alpha[slots], state.prompt_prior_beta[slots]
    state.alpha[slots], state.beta[slots] = discounted_update(
        state.alpha[slots], state.beta[slots], successes, trials, discount, pull_alpha, pull_beta)
    return state


def assign(state: PosteriorState, lookup: IdLookup, kind, ids, alpha: np.ndarray, beta: np.ndarray,
           as_prior: bool, prior_alpha: float, prior_beta: float) -> PosteriorState:
    """The record with the posterior of unique ``ids`` set to ``(alpha, beta)``; with ``as_prior``
    these also become the prompts' own prior. Consumes ``state``."""
    state, slots = _with_entries(state, lookup, kind, ids, prior_alpha, prior_beta)
    state.alpha[slots] = alpha
    state.beta[slots] = beta
    if as_prior:
        if state.prompt_prior_alpha is None:
            state = state._replace(prompt_prior_alpha=np.full(len(state.alpha), prior_alpha),
                                   prompt_prior_beta=np.full(len(state.beta), prior_beta))
        state.prompt_prior_alpha[slots] = alpha
        state.prompt_prior_beta[slots] = beta
    return state


def nbytes(state: PosteriorState, lookup: IdLookup) -> int:
    """Bytes of array memory held by ``state`` and its look-up (string ids themselves not counted)."""
    arrays = [state.alpha, state.beta, state.prompt_prior_alpha, state.prompt_prior_beta, state.last_tick]
    if state.id_kind != STR_KIND:
        arrays.append(np.asarray(state.ids))
    total = sum(array.nbytes for array in arrays if array is not None)
    return total + lookup.index(state.id_kind, state.ids).nbytes()
