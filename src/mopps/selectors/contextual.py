"""ContextualMoPPS: Thompson selection over a model that shares what it learns across prompts.

MoPPS keeps one independent Beta per prompt, so a prompt it never rolled out stays at the prior and a
prompt it saw long ago stays where it was. ``ContextualMoPPS`` predicts each prompt's success logit
as ability(t) + kappa * trained_i(t) + w . x_i + u_i (``mopps.core.contextual``, equations in
``docs/contextual.md``):

- the policy's ability moves with every policy update and carries every prompt with it, seen or unseen;
- kappa, learned from revisits, is the extra jump of a prompt the policy was just trained on;
- w maps per-prompt features x_i (``add_features``; e.g. frozen base-model embeddings, metadata) to
  difficulty and is learned online from every prompt's evidence, so unseen prompts get a prediction;
- u_i is the prompt's own evidence beyond that; it fades back to the prior while the prompt is away.

``select`` draws the model once (one shared draw of the global coefficients, an independent draw of
each residual; ``temperature`` scales the draw's width) and keeps the k candidates whose drawn rate
is closest to ``target``, as MoPPS does with its Beta draws. ``Selection.predicted_rate`` is the
posterior predictive mean. Without features it is a MoPPS whose prompts share the policy's drift.

Memory per prompt with features of width d: 4 d bytes of float32 features, 33 bytes of model state
(residual mean and variance, decayed training count, last-update tick, has-features flag) and the
id index (8 bytes per id, plus 4 bytes per id value for dense int ids): 301 bytes at d = 64.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, NamedTuple

import numpy as np

from mopps.core.contextual import (
    ContextualModel,
    GlobalLayout,
    advance_global,
    age_residuals,
    assimilate,
    binomial_site,
    decay_counts,
    design_rows,
    expected_rate,
    fit_feature_transform,
    halflife_from_drift,
    logit_moments,
    residual_drift,
    residual_innovations,
    sigmoid,
    thompson_logits,
)
from mopps.core.id_index import IdLookup, normalize_ids, require_unique
from mopps.core.schedule import check_target, target_at
from mopps.core.selection import exploration_slots, informative_draw, topk_toward_target, with_exploration
from mopps.core.validation import (
    as_feature_matrix,
    check_choice,
    check_integer,
    check_number,
    check_probability,
    check_same_length,
    check_saved_ids,
)
from mopps.selectors.base import Selector

TRAINING_RULES = ("mixed", "all")
CONTEXTUAL_STRATEGIES = ("topk", "informative", "perturbed")  # how the k are chosen from the predictions
# Model features are clipped to this many standard deviations (of the first add_features batch). A
# linear logit cannot use a prompt 10^3 sd out (its logit variance would be ~10^6 and the evidence
# updates lose all precision: NaN at 3000 sd in a 40-step stress run); |x| <= 30 stayed finite in
# every run, and real features (embeddings, difficulty descriptors) lie far inside it.
FEATURE_CLIP = 30.0


class ContextualState(NamedTuple):
    """Learned state of ``ContextualMoPPS``: per-prompt arrays (n,) in slot order, n = prompts with an
    entry (observed or given features), and the global coefficients.

    ``id_kind``: "int", "str" or None while empty; ``ids``: int64 array or list of str, unique.
    ``u_mean``, ``u_var``: float64, the residual's posterior as of ``last_tick`` (int64), the policy
    tick of its last update; ``trained``: float64, decayed training count as of ``last_tick``;
    ``has_features``: bool; ``features``: float32 (n, d), standardized features (zeros where none;
    d = 0 before any). ``theta_mean`` (D,), ``theta_cov`` (D, D): the global coefficients' posterior
    (layout ``GlobalLayout(trend, d)``). ``feature_matrix`` (d_in, d), ``feature_offset`` (d,): the
    fixed map from raw to model features (None before any). ``drift_moments``: with
    ``residual_halflife="auto"``, float64 (5,), the summed weighted moments of the revisits'
    innovation excess (logit^2) against their gaps (ticks)
    (``mopps.core.contextual.residual_innovations``), from which the residual drift is read; None
    otherwise. With ``"auto"``, ``last_tick`` is -1 for a prompt that has features but no evidence.
    """

    id_kind: str | None
    ids: Any
    u_mean: np.ndarray
    u_var: np.ndarray
    trained: np.ndarray
    last_tick: np.ndarray
    has_features: np.ndarray
    features: np.ndarray
    theta_mean: np.ndarray
    theta_cov: np.ndarray
    feature_matrix: np.ndarray | None = None
    feature_offset: np.ndarray | None = None
    drift_moments: np.ndarray | None = None


class ContextualMoPPS(Selector):
    """Prompt selector over a shared, drifting logistic model of success rates.

    ``target``: the success rate aimed at (0.5), or a schedule ``[[tick, rate], ...]`` over the policy
    tick (``mopps.core.schedule``). ``temperature``: width of the Thompson draw
    relative to the posterior (1: the posterior; 0: no draw, rank the predictive means; default
    0.25, chosen on held-out seeds: ``docs/contextual.md``). ``feature_dim``: features wider than
    this are randomly projected to this many columns. ``projection_seed``: seed of that projection
    (fixed, so it is reproducible; not the selector's generator). ``training_rule``: which
    rolled-out prompts count as trained on: ``"mixed"`` (default: only groups whose successes are
    neither 0 nor all; an all-equal group has zero GRPO advantage and does not move the policy) or
    ``"all"``. ``model``: a ``mopps.core.contextual.ContextualModel`` (or a dict of its fields)
    with the priors and dynamics. ``explore``: exploration floor in [0, 1], the share of each
    batch's k chosen uniformly at random among the candidates the draw left out
    (``mopps.core.selection``): a prompt, or a whole feature bin, the model believes at 0 or 1 is
    otherwise revisited only as fast as its residual ages (a bin graded 0 by a broken grader teaches
    the shared weights that the bin is hopeless). Default 0 keeps this selector's measured figures;
    0.05 is recommended for long runs and is what the recovery tests use (the default of the
    recommended configuration is for the tuning of issue 18). ``strategy``: ``"topk"`` (default: the k
    draws nearest ``target``) or ``"informative"`` (k drawn without replacement, each weighted by the
    chance 1 - p^n - (1 - p)^n that its group of ``group_size`` rollouts is mixed, p its predictive
    mean; ``temperature`` and ``target`` are then unused) or ``"perturbed"`` (the k nearest ``target``
    of the predictive logit means plus fresh Gaussian noise of ``noise_sd`` at every selection instead
    of a Thompson draw, whose width shrinks with evidence; ``temperature`` is then unused).
    ``seed``: the selector's generator.

    Time is counted in policy ticks (``policy_updated``; ``SelectionLoop`` sends one per policy
    update, and one per ``Refill.fill`` however many rounds it rolls out): the ability's random walk
    and the residuals' and training counts' half-lives are per tick. Evidence (``update``) alone does
    not age the model, so a host that drives the selector without a loop calls ``policy_updated``
    after each optimiser step.
    """

    def __init__(self, target: float = 0.5, temperature: float = 0.25, feature_dim: int = 64,
                 projection_seed: int = 0, training_rule: str = "mixed",
                 model: ContextualModel | dict | None = None, explore: float = 0.0, strategy: str = "topk",
                 group_size: int = 8, noise_sd: float = 1.0, seed: int | None = 0) -> None:
        self.target = check_target(target)
        self.strategy = check_choice(strategy, "strategy", CONTEXTUAL_STRATEGIES)
        self.group_size = check_integer(group_size, "group_size", minimum=2)
        self.noise_sd = check_number(noise_sd, "noise_sd", minimum=0.0)
        self.explore = check_probability(explore, "explore")
        self.temperature = check_number(temperature, "temperature", minimum=0.0)
        self.feature_dim = check_integer(feature_dim, "feature_dim", minimum=1)
        self.projection_seed = check_integer(projection_seed, "projection_seed")
        self.training_rule = check_choice(training_rule, "training_rule", TRAINING_RULES)
        if model is None:
            model = ContextualModel()
        elif isinstance(model, dict):
            try:
                model = ContextualModel(**model)
            except TypeError as error:
                raise ValueError(f"model = {model!r}; not the fields of ContextualModel ({error})") from None
        elif not isinstance(model, ContextualModel):
            raise ValueError(f"model = {model!r}; model must be a ContextualModel, a dict of its fields or None")
        self.model = model
        self._lookup = IdLookup()  # id -> slot of ``state.ids``, derived, never saved
        super().__init__(seed)

    def __len__(self) -> int:
        """Number of prompts with an entry (observed or given features)."""
        return len(self.state.u_mean)

    def layout(self, state: ContextualState | None = None) -> GlobalLayout:
        """Positions of the global coefficients in ``theta_mean`` (of ``state``, default the current)."""
        state = self.state if state is None else state
        return GlobalLayout(trend=bool(self.model.trend), feature_dim=state.features.shape[1])

    def nbytes(self) -> int:
        """Bytes of array memory of the learned state and its id look-up (string ids not counted)."""
        state = self.state
        arrays = [state.u_mean, state.u_var, state.trained, state.last_tick, state.has_features, state.features,
                  state.theta_mean, state.theta_cov]
        if state.id_kind == "int":
            arrays.append(state.ids)
        if state.feature_matrix is not None:
            arrays += [state.feature_matrix, state.feature_offset]
        return sum(array.nbytes for array in arrays) + self._lookup.index(state.id_kind, state.ids).nbytes()

    # -- features ----------------------------------------------------------------------------------

    def add_features(self, ids, features) -> None:
        """Register a feature row per prompt: ``ids`` (m,) unique ints >= 0 or strings; ``features``
        float (m, d_in), finite.

        The first call fixes d_in and fits the standardization (and, if d_in > ``feature_dim``, the
        random projection) on its rows, so pass the whole pool, or a representative sample of at least
        a few hundred prompts, first. Later calls may add new ids. An id that already has features
        may be given the same row again (a resumed host can repeat the call); a different row is
        refused, because the model has learned from the old one. Rows are stored as float32 after the
        transform, clipped to +-``FEATURE_CLIP`` standard deviations. Values beyond the float32 range,
        and rows the transform maps to non-finite values (possible only with a loaded transform), are
        refused. Raises ``ValueError`` naming the argument and position; the state is unchanged.
        """
        state = self.state
        kind, normalized = normalize_ids(ids, "ids")
        self._check_kind(kind, "ids")
        array = _feature_array(features)
        check_same_length(ids=normalized, features=array)
        if state.feature_matrix is not None and array.shape[1] != len(state.feature_matrix):
            raise ValueError(
                f"features has {array.shape[1]} columns but this selector's features have "
                f"{len(state.feature_matrix)}; every call must pass the same width"
            )
        require_unique(kind, normalized, lambda position: f"ids[{position}]")
        if kind is None:
            return
        if array.shape[1] == 0:
            raise ValueError("features has 0 columns; give at least one feature per prompt")
        if state.feature_matrix is None:
            matrix, offset = fit_feature_transform(array, self.feature_dim, self.projection_seed)
        else:
            matrix, offset = state.feature_matrix, state.feature_offset
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is refused just below
            projected = array @ matrix - offset
        finite = np.isfinite(projected).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            raise ValueError(f"features[{row}] maps to non-finite model features under this selector's feature "
                             "transform; features must be of the scale of the first add_features call")
        transformed = np.clip(projected, -FEATURE_CLIP, FEATURE_CLIP).astype(np.float32)
        if state.feature_matrix is not None and state.id_kind is not None:
            slots = self._lookup.index(state.id_kind, state.ids).find(kind, normalized)
            safe = np.maximum(slots, 0)
            changed = (slots >= 0) & state.has_features[safe] & np.any(state.features[safe] != transformed, axis=1)
            if changed.any():
                position = int(np.argmax(changed))
                raise ValueError(
                    f"ids[{position}] = {_shown(normalized[position])} already has different features; a "
                    "prompt's features cannot change (the model has learned from them)"
                )
        # Validated: build the new record (the old one stays intact until it is replaced).
        state = self._writable_state()
        if state.feature_matrix is None:
            state = self._with_feature_space(state, matrix, offset)
        state, slots = self._with_entries(state, kind, normalized)
        # Into copies: the live arrays may be shared with a state dict (rare calls; a copy is cheap here).
        features, has_features = state.features.copy(), state.has_features.copy()
        features[slots] = transformed
        has_features[slots] = True
        self.state = state._replace(features=features, has_features=has_features)

    def _with_feature_space(self, state: ContextualState, matrix: np.ndarray, offset: np.ndarray) -> ContextualState:
        """``state`` with d feature columns (zeros) and theta extended by their prior."""
        layout = self.layout(state)
        wide = GlobalLayout(trend=layout.trend, feature_dim=matrix.shape[1])
        theta_mean, theta_cov = self.model.extend_global(layout, wide, state.theta_mean, state.theta_cov)
        return state._replace(features=np.zeros((len(state.u_mean), wide.feature_dim), dtype=np.float32),
                              has_features=state.has_features.copy(), theta_mean=theta_mean, theta_cov=theta_cov,
                              feature_matrix=matrix, feature_offset=offset)

    # -- queries -----------------------------------------------------------------------------------

    def logit_posterior(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of each id's success logit now, float64 (m,) each."""
        kind, normalized = normalize_ids(ids, "ids")
        self._check_kind(kind, "ids")
        state = self.state
        rows, u_mean, u_var = self._gather(state, self._slots(state, kind, normalized))
        return logit_moments(state.theta_mean, state.theta_cov, rows, u_mean, u_var)

    def predict(self, ids) -> np.ndarray:
        """Posterior predictive success rate of each id now, float64 (m,) in (0, 1)."""
        return expected_rate(*self.logit_posterior(ids))

    # -- protocol hooks ----------------------------------------------------------------------------

    def initial_state(self) -> ContextualState:
        layout = GlobalLayout(trend=bool(self.model.trend), feature_dim=0)
        theta_mean, theta_cov = self.model.initial_global(layout)
        return ContextualState(None, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0),
                               np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros((0, 0), dtype=np.float32),
                               theta_mean, theta_cov,
                               drift_moments=np.zeros(5) if self._learns_halflife else None)

    @property
    def _learns_halflife(self) -> bool:
        return self.model.residual_halflife == "auto"

    def residual_halflife(self, state: ContextualState | None = None) -> float | None:
        """The residuals' half-life in ticks now: the model's constant, or with ``"auto"`` the one
        learned so far (None: they do not age)."""
        state = self.state if state is None else state
        if not self._learns_halflife:
            return self.model.residual_halflife
        return halflife_from_drift(residual_drift(state.drift_moments), self.model.residual_var)

    def _choose(self, state, kind, ids, k, rng):
        rows, u_mean, u_var = self._gather(state, self._slots(state, kind, ids), np.float32)
        logit_mean, logit_var = logit_moments(state.theta_mean, state.theta_cov, rows, u_mean, u_var)
        predicted = expected_rate(logit_mean, logit_var)
        explored = exploration_slots(k, self.explore, rng) if self.explore else 0
        if self.strategy == "informative":
            index, scores = informative_draw(predicted, k - explored, self.group_size, rng)
            return with_exploration(index, len(scores), explored, rng), scores, predicted
        if self.strategy == "perturbed":
            noise = self.noise_sd * rng.standard_normal(len(predicted))
            scores = sigmoid(np.asarray(logit_mean, dtype=np.float64) + noise)
        elif self.temperature == 0.0:
            scores = predicted
        else:
            scores = sigmoid(thompson_logits(state.theta_mean, state.theta_cov, rows, u_mean, u_var, rng,
                                             self.temperature))
        index = topk_toward_target(scores, k - explored, target_at(self.target, self.tick))
        return with_exploration(index, len(scores), explored, rng), scores, predicted

    def _observe(self, state, kind, ids, successes, trials) -> ContextualState:
        state, slots = self._with_entries(state, kind, ids)
        layout = self.layout(state)
        rows, u_mean, u_var = self._gather(state, slots)
        prior_mean, prior_var = logit_moments(state.theta_mean, state.theta_cov, rows, u_mean, u_var)
        site_mean, site_var = binomial_site(prior_mean, prior_var, successes, trials)
        if self._learns_halflife:
            # Surprise against the residual as it was left (not aged), at revisits a tick or more later.
            last = state.last_tick[slots]
            elapsed = self.tick - last
            revisit = (last >= 0) & (elapsed >= 1)
            moments = residual_innovations(site_mean[revisit], site_var[revisit], (prior_mean - u_mean)[revisit],
                                           (prior_var - u_var)[revisit], state.u_mean[slots][revisit],
                                           state.u_var[slots][revisit], elapsed[revisit])
            state = state._replace(drift_moments=state.drift_moments + moments)
        theta_mean, theta_cov, u_mean, u_var = assimilate(state.theta_mean, state.theta_cov, rows, u_mean, u_var,
                                                          site_mean, site_var)
        if self.training_rule == "mixed":
            trained_now = ((successes > 0.0) & (successes < trials)).astype(np.float64)
        else:
            trained_now = np.ones(len(slots))
        state.u_mean[slots] = u_mean
        state.u_var[slots] = u_var + trained_now * self.model.jump_extra_sd ** 2
        state.trained[slots] = rows[:, layout.jump] + trained_now
        state.last_tick[slots] = self.tick
        return state._replace(theta_mean=theta_mean, theta_cov=theta_cov)

    def _advance(self, state, ticks) -> ContextualState:
        # The per-prompt parts age lazily from ``last_tick``; the shared coefficients move now.
        theta_mean, theta_cov = advance_global(self.layout(state), state.theta_mean, state.theta_cov,
                                               self.model.process_var(self.layout(state)), ticks)
        return state._replace(theta_mean=theta_mean, theta_cov=theta_cov)

    # -- the per-prompt table ----------------------------------------------------------------------

    def _slots(self, state: ContextualState, kind, ids) -> np.ndarray:
        if kind is None or state.id_kind is None:
            return np.full(len(ids), -1, dtype=np.int64)
        return self._lookup.index(state.id_kind, state.ids).find(kind, ids)

    def _gather(self, state: ContextualState, slots: np.ndarray,
                dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Design rows (m, D) of ``dtype`` and aged residual ``(mean, var)`` float64 (m,) of ``slots``
        now (-1: no entry)."""
        layout = self.layout(state)
        count = len(slots)
        known = slots >= 0
        all_known = bool(count) and bool(known.all())
        safe = slots if all_known else np.where(known, slots, 0)
        residual_var = self.model.residual_var
        if not known.any():
            u_mean, u_var, trained = np.zeros(count), np.full(count, residual_var), np.zeros(count)
            missing, features = np.ones(count, dtype=bool), None
        else:
            elapsed = self.tick - np.take(state.last_tick, safe)
            u_mean, u_var = age_residuals(np.take(state.u_mean, safe), np.take(state.u_var, safe), elapsed,
                                          residual_var, self.residual_halflife(state))
            trained = decay_counts(np.take(state.trained, safe), elapsed, self.model.training_halflife)
            missing = ~np.take(state.has_features, safe)
            # np.take copies whole rows ~3x faster than fancy indexing (the select path's largest copy).
            features = np.take(state.features, safe, axis=0) if layout.feature_dim else None
            if not all_known:
                u_mean = np.where(known, u_mean, 0.0)
                u_var = np.where(known, u_var, residual_var)
                trained = np.where(known, trained, 0.0)
                missing = missing | ~known
                if features is not None:
                    features[~known] = 0.0
        if layout.feature_dim and features is None:
            features = np.zeros((count, layout.feature_dim), dtype=np.float32)
        return design_rows(layout, trained, missing, features, dtype), u_mean, u_var

    def _with_entries(self, state: ContextualState, kind, ids) -> tuple[ContextualState, np.ndarray]:
        """``state`` with a prior entry (residual N(0, residual_sd^2), no features) for every unknown id
        of ``ids``, and the slots of ``ids``."""
        slots, ids_after, n_new = self._lookup.extend_ids(kind, state.ids, ids)
        if n_new == 0:
            return state, slots

        def grown(values: np.ndarray, fill) -> np.ndarray:
            return np.concatenate([values, np.full((n_new,) + values.shape[1:], fill, dtype=values.dtype)])

        return state._replace(
            id_kind=kind, ids=ids_after, u_mean=grown(state.u_mean, 0.0),
            u_var=grown(state.u_var, self.model.residual_var), trained=grown(state.trained, 0.0),
            # Entries without evidence: -1 lets the learned half-life leave first visits out (its
            # estimator needs a residual that evidence set); the fixed one ages a prior residual to itself.
            last_tick=grown(state.last_tick, -1 if self._learns_halflife else 0),
            has_features=grown(state.has_features, False), features=grown(state.features, 0.0),
        ), slots

    # -- state -------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        config = {
            "target": self.target,
            "temperature": self.temperature,
            "feature_dim": self.feature_dim,
            "projection_seed": self.projection_seed,
            "training_rule": self.training_rule,
            "model": asdict(self.model),
        }
        # Options newer than the state format are written only when set (old files keep loading).
        if self.explore:
            config["explore"] = self.explore
        if self.strategy == "informative":
            config.update(strategy=self.strategy, group_size=self.group_size)
        elif self.strategy == "perturbed":
            config.update(strategy=self.strategy, noise_sd=self.noise_sd)
        return config

    def _restore(self, arrays: dict[str, Any]) -> ContextualState:
        kind = arrays["id_kind"]
        # Every array is copied: ``_observe`` writes into the record, and ``arrays`` may be shared
        # (one state dict loaded into two selectors must give two independent selectors).
        ids = check_saved_ids(kind, arrays["ids"])
        count = len(ids)
        columns = {}
        if "last_tick" not in arrays and "last_step" in arrays:
            # Saved before ticks existed: the step of the last update, in the unit ticks continue (the
            # base class restores tick = step for such states).
            arrays = {**arrays, "last_tick": arrays["last_step"]}
        for name, dtype in (("u_mean", np.float64), ("u_var", np.float64), ("trained", np.float64),
                            ("last_tick", np.int64), ("has_features", np.bool_)):
            values = np.asarray(arrays[name])
            if values.shape != (count,):
                raise ValueError(f"{name} has shape {values.shape}; expected ({count},)")
            columns[name] = values.astype(dtype)
        if not (np.all(np.isfinite(columns["u_mean"])) and np.all(columns["u_var"] > 0.0)
                and np.all(np.isfinite(columns["u_var"])) and np.all(columns["trained"] >= 0.0)):
            raise ValueError("u_mean must be finite, u_var finite and > 0, trained >= 0")
        features = np.array(arrays["features"], dtype=np.float32)
        matrix, offset = arrays.get("feature_matrix"), arrays.get("feature_offset")
        if matrix is None:
            if features.shape != (count, 0) or columns["has_features"].any() or offset is not None:
                raise ValueError("features are stored without the feature_matrix that made them")
        else:
            matrix = np.array(matrix, dtype=np.float64)
            offset = np.array(offset, dtype=np.float64)
            if (matrix.ndim != 2 or matrix.shape[1] < 1 or offset.shape != (matrix.shape[1],)
                    or features.shape != (count, matrix.shape[1])):
                raise ValueError("feature_matrix, feature_offset and features have inconsistent shapes")
            if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(offset)) and np.all(np.isfinite(features))):
                raise ValueError("feature_matrix, feature_offset and features must be finite")
        layout = GlobalLayout(trend=bool(self.model.trend), feature_dim=features.shape[1])
        theta_mean = np.array(arrays["theta_mean"], dtype=np.float64)
        theta_cov = np.array(arrays["theta_cov"], dtype=np.float64)
        if theta_mean.shape != (layout.size,) or theta_cov.shape != (layout.size, layout.size):
            raise ValueError(f"theta_mean / theta_cov do not have {layout.size} coefficients")
        if not (np.all(np.isfinite(theta_mean)) and np.all(np.isfinite(theta_cov))
                and np.allclose(theta_cov, theta_cov.T) and np.all(np.linalg.eigvalsh(theta_cov) > 0.0)):
            raise ValueError("theta_cov must be a finite, symmetric, positive definite matrix")
        moments = arrays.get("drift_moments")
        if not self._learns_halflife:
            if moments is not None:
                raise ValueError("drift_moments is set but this model's residual half-life is fixed")
        else:
            moments = np.array(moments, dtype=np.float64)
            if moments.shape != (5,) or not np.all(np.isfinite(moments)) or moments[0] < 0 or moments[2] < 0:
                raise ValueError("drift_moments must be 5 finite numbers with non-negative weights")
        if columns["last_tick"].size and columns["last_tick"].min() < -1:
            raise ValueError("last_tick must be >= -1")
        return ContextualState(kind, ids, features=features, theta_mean=theta_mean, theta_cov=theta_cov,
                               feature_matrix=matrix, feature_offset=offset, drift_moments=moments, **columns)


def _feature_array(features) -> np.ndarray:
    """``features`` as a float64 (m, d) array of values finite in float32 (they are stored as float32);
    ``ValueError`` naming the first bad entry."""
    array = as_feature_matrix(features, "features")
    fits = np.abs(array) <= np.finfo(np.float32).max
    if not fits.all():
        row, column = np.unravel_index(int(np.argmin(fits)), array.shape)
        raise ValueError(f"features[{row}, {column}] = {array[row, column]}; features must be finite in float32 "
                         f"(|value| <= {float(np.finfo(np.float32).max):.4g})")
    return array


def _shown(value) -> str:
    """An id as a user wrote it: 7, not np.int64(7); strings quoted."""
    return repr(value) if isinstance(value, str) else str(int(value))

