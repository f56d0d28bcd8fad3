"""ContextualMoPPS: Thompson selection over a model that shares what it learns across prompts.

MoPPS keeps one independent Beta per prompt, so a prompt it never rolled out stays at the prior and a
prompt it saw long ago stays where it was. ``ContextualMoPPS`` predicts each prompt's success logit
as ability(t) + kappa * trained_i(t) + w . x_i + u_i (``mopps.core.contextual``, equations in
``docs/contextual.md``):

- the policy's ability moves every step and carries every prompt with it, seen or unseen;
- kappa, learned from revisits, is the extra jump of a prompt the policy was just trained on;
- w maps per-prompt features x_i (``add_features``; e.g. frozen base-model embeddings, metadata) to
  difficulty and is learned online from every prompt's evidence, so unseen prompts get a prediction;
- u_i is the prompt's own evidence beyond that; it fades back to the prior while the prompt is away.

``select`` draws the model once (one shared draw of the global coefficients, an independent draw of
each residual; ``temperature`` scales the draw's width) and keeps the k candidates whose drawn rate
is closest to ``target``, as MoPPS does with its Beta draws. ``Selection.predicted_rate`` is the
posterior predictive mean. Without features it is a MoPPS whose prompts share the policy's drift.

Memory per prompt with features of width d: 4 d bytes of float32 features, 33 bytes of model state
(residual mean and variance, decayed training count, last-update step, has-features flag) and the
id index (8 bytes per id, plus 4 bytes per id value for dense int ids): 301 bytes at d = 64.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

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
    logit_moments,
    sigmoid,
    thompson_logits,
)
from mopps.core.id_index import IdIndex, first_duplicate, normalize_ids
from mopps.core.selection import topk_toward_target
from mopps.core.validation import check_probability, check_same_length
from mopps.selectors.base import Selector

TRAINING_RULES = ("mixed", "all")


class ContextualMoPPS(Selector):
    """Prompt selector over a shared, drifting logistic model of success rates.

    ``target``: the success rate aimed at (0.5). ``temperature``: width of the Thompson draw
    relative to the posterior (1: the posterior; 0: no draw, rank the predictive means).
    ``feature_dim``: features wider than this are randomly projected to this many columns.
    ``projection_seed``: seed of that projection (fixed, so it is reproducible; not the selector's
    generator). ``training_rule``: which rolled-out prompts count as trained on: ``"mixed"`` (default:
    only groups whose successes are neither 0 nor all; an all-equal group has zero GRPO advantage and
    does not move the policy) or ``"all"``. ``model``: a ``mopps.core.contextual.ContextualModel`` (or
    a dict of its fields) with the priors and dynamics; the defaults were chosen on held-out testbed
    seeds (``docs/contextual.md``). ``seed``: the selector's generator.
    """

    def __init__(self, target: float = 0.5, temperature: float = 1.0, feature_dim: int = 64,
                 projection_seed: int = 0, training_rule: str = "mixed",
                 model: ContextualModel | dict | None = None, seed: int | None = 0) -> None:
        self.target = check_probability(target, "target")
        self.temperature = _check_number(temperature, "temperature", minimum=0.0)
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, (int, np.integer)) or feature_dim < 1:
            raise ValueError(f"feature_dim = {feature_dim!r}; feature_dim must be an integer >= 1")
        self.feature_dim = int(feature_dim)
        if isinstance(projection_seed, bool) or not isinstance(projection_seed, (int, np.integer)) or projection_seed < 0:
            raise ValueError(f"projection_seed = {projection_seed!r}; projection_seed must be an integer >= 0")
        self.projection_seed = int(projection_seed)
        if training_rule not in TRAINING_RULES:
            raise ValueError(f"training_rule = {training_rule!r}; training_rule must be one of {TRAINING_RULES}")
        self.training_rule = training_rule
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
        super().__init__(seed)
        self.layout = GlobalLayout(trend=bool(model.trend), feature_dim=0)
        self.theta_mean, self.theta_cov = model.initial_global(self.layout)
        self.index = IdIndex()
        self.u_mean = np.zeros(0)
        self.u_var = np.zeros(0)
        self.trained = np.zeros(0)  # decayed training count as of last_step
        self.last_step = np.zeros(0, dtype=np.int64)  # step at which u_mean, u_var, trained were set
        self.has_features = np.zeros(0, dtype=bool)
        self.features = np.zeros((0, 0), dtype=np.float32)  # standardized model features (slots, d)
        self.feature_matrix: np.ndarray | None = None  # (d_in, d): raw features @ matrix - offset
        self.feature_offset: np.ndarray | None = None

    def __len__(self) -> int:
        """Number of prompts with an entry (observed or given features)."""
        return len(self.index)

    def nbytes(self) -> int:
        """Bytes of array memory held: per-prompt arrays (with their spare capacity), the id index
        (string ids' dict not counted) and the global coefficients."""
        per_prompt = (self.u_mean, self.u_var, self.trained, self.last_step, self.has_features, self.features)
        return (sum(array.nbytes for array in per_prompt) + self.index.nbytes() + self.theta_mean.nbytes
                + self.theta_cov.nbytes + (0 if self.feature_matrix is None else self.feature_matrix.nbytes))

    # -- features ----------------------------------------------------------------------------------

    def add_features(self, ids, features) -> None:
        """Register a feature row per prompt: ``ids`` (m,) unique ints >= 0 or strings; ``features``
        float (m, d_in), finite.

        The first call fixes d_in and fits the standardization (and, if d_in > ``feature_dim``, the
        random projection) on its rows, so pass the whole pool, or a representative sample of at least
        a few hundred prompts, first. Later calls may add new ids. An id that already has features
        may be given the same row again (a resumed host can repeat the call); a different row is
        refused, because the model has learned from the old one. Rows are stored as float32 after the
        transform. Raises ``ValueError`` naming the argument and position; the state is unchanged.
        """
        kind, normalized = normalize_ids(ids, "ids")
        self.index.check_kind(kind, "ids")
        array = _feature_array(features)
        check_same_length(ids=normalized, features=array)
        if self.feature_matrix is not None and array.shape[1] != len(self.feature_matrix):
            raise ValueError(
                f"features has {array.shape[1]} columns but this selector's features have "
                f"{len(self.feature_matrix)}; every call must pass the same width"
            )
        position = first_duplicate(kind, normalized)
        if position >= 0:
            raise ValueError(f"ids[{position}] = {_shown(normalized[position])} occurs earlier too; ids must be unique")
        if kind is None:
            return
        if array.shape[1] == 0:
            raise ValueError("features has 0 columns; give at least one feature per prompt")
        if self.feature_matrix is None:
            matrix, offset = fit_feature_transform(array, self.feature_dim, self.projection_seed)
        else:
            matrix, offset = self.feature_matrix, self.feature_offset
        transformed = (array @ matrix - offset).astype(np.float32)
        slots = self.index.find(kind, normalized)
        existing = slots >= 0
        if existing.any() and self.feature_matrix is not None:
            had = existing & self.has_features[np.maximum(slots, 0)]
            changed = had & np.any(self.features[np.maximum(slots, 0)] != transformed, axis=1)
            if changed.any():
                position = int(np.argmax(changed))
                raise ValueError(
                    f"ids[{position}] = {_shown(normalized[position])} already has different features; a "
                    "prompt's features cannot change (the model has learned from them)"
                )
        # Validated: from here on the state changes.
        if self.feature_matrix is None:
            self._start_features(matrix, offset)
        slots = self._create(kind, normalized)
        self.features[slots] = transformed
        self.has_features[slots] = True

    def _start_features(self, matrix: np.ndarray, offset: np.ndarray) -> None:
        self.feature_matrix, self.feature_offset = matrix, offset
        new_layout = replace(self.layout, feature_dim=matrix.shape[1])
        self.theta_mean, self.theta_cov = self.model.extend_global(self.layout, new_layout, self.theta_mean,
                                                                   self.theta_cov)
        self.layout = new_layout
        self.features = np.zeros((len(self.u_mean), new_layout.feature_dim), dtype=np.float32)

    # -- queries -----------------------------------------------------------------------------------

    def logit_posterior(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of each id's success logit now, float64 (m,) each."""
        kind, normalized = normalize_ids(ids, "ids")
        self.index.check_kind(kind, "ids")
        rows, u_mean, u_var = self._gather(self.index.find(kind, normalized))
        return logit_moments(self.theta_mean, self.theta_cov, rows, u_mean, u_var)

    def predict(self, ids) -> np.ndarray:
        """Posterior predictive success rate of each id now, float64 (m,) in (0, 1)."""
        return expected_rate(*self.logit_posterior(ids))

    # -- protocol hooks ----------------------------------------------------------------------------

    def _check_kind(self, kind, name: str) -> None:
        self.index.check_kind(kind, name)

    def _choose(self, kind, ids, k):
        rows, u_mean, u_var = self._gather(self.index.find(kind, ids), np.float32)
        predicted = expected_rate(*logit_moments(self.theta_mean, self.theta_cov, rows, u_mean, u_var))
        if self.temperature == 0.0:
            return topk_toward_target(predicted, k, self.target), predicted, predicted
        draws = sigmoid(thompson_logits(self.theta_mean, self.theta_cov, rows, u_mean, u_var, self.rng,
                                        self.temperature))
        return topk_toward_target(draws, k, self.target), draws, predicted

    def _observe(self, kind, ids, successes, trials) -> None:
        slots = self._create(kind, ids)
        rows, u_mean, u_var = self._gather(slots)
        prior_mean, prior_var = logit_moments(self.theta_mean, self.theta_cov, rows, u_mean, u_var)
        site_mean, site_var = binomial_site(prior_mean, prior_var, successes, trials)
        theta_mean, theta_cov, u_mean, u_var = assimilate(self.theta_mean, self.theta_cov, rows, u_mean, u_var,
                                                          site_mean, site_var)
        if self.training_rule == "mixed":
            trained_now = ((successes > 0.0) & (successes < trials)).astype(np.float64)
        else:
            trained_now = np.ones(len(slots))
        self.u_mean[slots] = u_mean
        self.u_var[slots] = u_var + trained_now * self.model.jump_extra_sd ** 2
        self.trained[slots] = rows[:, self.layout.jump] + trained_now
        self.last_step[slots] = self.step
        self.theta_mean, self.theta_cov = advance_global(self.layout, theta_mean, theta_cov,
                                                         self.model.process_var(self.layout))

    # -- the per-prompt table ----------------------------------------------------------------------

    def _gather(self, slots: np.ndarray, dtype=np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Design rows (m, D) of ``dtype`` and aged residual ``(mean, var)`` float64 (m,) of ``slots``
        now (-1: no entry)."""
        count = len(slots)
        known = slots >= 0
        all_known = bool(count) and bool(known.all())
        safe = slots if all_known else np.where(known, slots, 0)
        residual_var = self.model.residual_var
        if not known.any():
            u_mean, u_var, trained = np.zeros(count), np.full(count, residual_var), np.zeros(count)
            missing, features = np.ones(count, dtype=bool), None
        else:
            elapsed = self.step - self.last_step[safe]
            u_mean, u_var = age_residuals(self.u_mean[safe], self.u_var[safe], elapsed, residual_var,
                                          self.model.residual_halflife)
            trained = decay_counts(self.trained[safe], elapsed, self.model.training_halflife)
            missing = ~self.has_features[safe]
            features = self.features[safe] if self.layout.feature_dim else None
            if not all_known:
                u_mean = np.where(known, u_mean, 0.0)
                u_var = np.where(known, u_var, residual_var)
                trained = np.where(known, trained, 0.0)
                missing = missing | ~known
                if features is not None:
                    features[~known] = 0.0
        if self.layout.feature_dim and features is None:
            features = np.zeros((count, self.layout.feature_dim), dtype=np.float32)
        return design_rows(self.layout, trained, missing, features, dtype), u_mean, u_var

    def _create(self, kind, ids) -> np.ndarray:
        """Slots of ``ids``, creating prior entries (residual N(0, residual_sd^2)) for new ones."""
        slots = self.index.insert(kind, ids)
        count = len(self.index)
        old = len(self.u_mean)
        if count > old:
            capacity = max(count, 2 * old, 16)
            self.u_mean = _grow(self.u_mean, capacity, 0.0)
            self.u_var = _grow(self.u_var, capacity, self.model.residual_var)
            self.trained = _grow(self.trained, capacity, 0.0)
            self.last_step = _grow(self.last_step, capacity, 0)
            self.has_features = _grow(self.has_features, capacity, False)
            self.features = _grow(self.features, capacity, 0.0)
        return slots

    # -- state -------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "temperature": self.temperature,
            "feature_dim": self.feature_dim,
            "projection_seed": self.projection_seed,
            "training_rule": self.training_rule,
            "model": asdict(self.model),
        }

    def _arrays(self) -> dict[str, Any]:
        count = len(self.index)
        arrays: dict[str, Any] = {
            "id_kind": self.index.kind,
            "ids": self.index.ids(),
            "u_mean": self.u_mean[:count].copy(),
            "u_var": self.u_var[:count].copy(),
            "trained": self.trained[:count].copy(),
            "last_step": self.last_step[:count].copy(),
            "has_features": self.has_features[:count].copy(),
            "theta_mean": self.theta_mean.copy(),
            "theta_cov": self.theta_cov.copy(),
        }
        if self.feature_matrix is not None:
            arrays["features"] = self.features[:count].copy()
            arrays["feature_matrix"] = self.feature_matrix.copy()
            arrays["feature_offset"] = self.feature_offset.copy()
        return arrays

    def _restored(self, arrays: dict[str, Any]) -> dict[str, Any]:
        kind = arrays["id_kind"]
        if kind not in (None, "int", "str"):
            raise ValueError(f"id_kind = {kind!r}; it must be None, 'int' or 'str'")
        stored_kind, ids = normalize_ids(arrays["ids"], "ids")
        if stored_kind not in (None, kind) or (kind is None and len(ids)):
            raise ValueError(f"id_kind = {kind!r} does not match the stored ids")
        if first_duplicate(stored_kind, ids) >= 0:
            raise ValueError("ids are not unique")
        count = len(ids)
        columns = {}
        for name, dtype in (("u_mean", np.float64), ("u_var", np.float64), ("trained", np.float64),
                            ("last_step", np.int64), ("has_features", np.bool_)):
            values = np.asarray(arrays[name])
            if values.shape != (count,):
                raise ValueError(f"{name} has shape {values.shape}; expected ({count},)")
            columns[name] = values.astype(dtype)
        if not np.all(np.isfinite(columns["u_mean"])) or not np.all(columns["u_var"] > 0.0):
            raise ValueError("u_mean must be finite and u_var > 0")
        if "feature_matrix" in arrays:
            matrix = np.asarray(arrays["feature_matrix"], dtype=np.float64)
            offset = np.asarray(arrays["feature_offset"], dtype=np.float64)
            features = np.asarray(arrays["features"], dtype=np.float32)
            if matrix.ndim != 2 or offset.shape != (matrix.shape[1],) or features.shape != (count, matrix.shape[1]):
                raise ValueError("feature_matrix, feature_offset and features have inconsistent shapes")
            layout = GlobalLayout(trend=bool(self.model.trend), feature_dim=matrix.shape[1])
        else:
            if columns["has_features"].any():
                raise ValueError("has_features is set but no features are stored")
            matrix = offset = None
            features = np.zeros((count, 0), dtype=np.float32)
            layout = GlobalLayout(trend=bool(self.model.trend), feature_dim=0)
        theta_mean = np.asarray(arrays["theta_mean"], dtype=np.float64)
        theta_cov = np.asarray(arrays["theta_cov"], dtype=np.float64)
        if theta_mean.shape != (layout.size,) or theta_cov.shape != (layout.size, layout.size):
            raise ValueError(f"theta_mean / theta_cov do not have {layout.size} coefficients")
        if not (np.all(np.isfinite(theta_mean)) and np.all(np.isfinite(theta_cov))):
            raise ValueError("theta_mean and theta_cov must be finite")
        return {
            "index": IdIndex.from_ids(kind, ids), "layout": layout,
            "theta_mean": theta_mean, "theta_cov": theta_cov,
            "features": features, "feature_matrix": matrix, "feature_offset": offset, **columns,
        }


def _feature_array(features) -> np.ndarray:
    """``features`` as a finite float64 (m, d) array; ``ValueError`` naming the first bad entry."""
    try:
        array = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"features must be numbers; could not convert: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"features must be two-dimensional (prompts, columns); got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        row, column = np.unravel_index(int(np.argmin(finite)), array.shape)
        raise ValueError(f"features[{row}, {column}] = {array[row, column]}; features must be finite")
    return array


def _shown(value) -> str:
    """An id as a user wrote it: 7, not np.int64(7); strings quoted."""
    return repr(value) if isinstance(value, str) else str(int(value))


def _check_number(value, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} = {value!r}; {name} must be a number")
    value = float(value)
    if not (np.isfinite(value) and value >= minimum):
        raise ValueError(f"{name} = {value}; {name} must be finite and >= {minimum}")
    return value


def _grow(array: np.ndarray, capacity: int, fill) -> np.ndarray:
    grown = np.full((capacity,) + array.shape[1:], fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
