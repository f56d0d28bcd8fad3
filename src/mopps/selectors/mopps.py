"""MoPPS: Model Predictive Prompt Selection (arXiv 2507.04632), and Uniform over the same posterior.

Each prompt keeps Beta(alpha, beta) over its success rate. ``select`` draws one Thompson sample per
candidate from its posterior (unseen prompts: the prior) and applies a rule to the draws:

- ``"topk"`` (the paper): the k draws closest to ``target`` (gamma* = 0.5);
- ``"threshold"``: the reference's band rule on ``band`` (k at random from inside, else the nearest);
- ``"learnability"``: the k largest p(1 - p) of the draws;
- ``"greedy_mean"``: the ``topk`` rule on posterior means instead of draws (no exploration: the
  ablation the paper lacks);
- ``"uniform"``: k at random (posteriors still learn, so predictions can be logged and compared).

``update`` applies the discounted update (``mopps.core.posterior.discounted_update``) to the rolled-out
prompts only; prompts not rolled out are not decayed (as in the reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mopps.core import table
from mopps.core.drift import drift_variance
from mopps.core.id_index import IdLookup, normalize_ids, require_unique
from mopps.core.posterior import credible_interval, posterior_mean, thompson_sample
from mopps.core.schedule import check_target, target_at
from mopps.core.selection import (
    exploration_slots,
    informative_draw,
    largest_learnability,
    perturbed_rates,
    threshold_band,
    topk_toward_target,
    uniform_choice,
    with_exploration,
)
from mopps.core.table import PosteriorState
from mopps.core.validation import (
    as_float_array,
    check_band,
    check_choice,
    check_integer,
    check_number,
    check_observations,
    check_positive,
    check_probability,
    check_same_length,
    check_saved_ids,
    number_from_text,
)
from mopps.selectors.base import Selector

STRATEGIES = ("topk", "threshold", "learnability", "greedy_mean", "uniform", "informative", "perturbed")


class MoPPS(Selector):
    """Thompson-sampling prompt selector over per-prompt Beta posteriors.

    ``prior``: (alpha0, beta0) > 0, the Beta prior of unseen prompts and the point the discount pulls
    toward (reference: (1, 1)). ``discount``: lambda in [0, 1] (reference ``bandit_decay_ratio``: 1.0
    for MATH, 0.5 for Countdown/Geo3k), applied at each update of a prompt as in the paper; or
    ``"auto"``, learned forgetting (``mopps.core.drift``, ``docs/forgetting.md``): the drift variance
    of success logits per policy tick is estimated from the surprise of every revisit of every
    prompt, and each posterior is aged by it over the ticks since its last evidence, both when it is
    a candidate and when it is updated (a prompt unseen for long forgets more). Time is counted in
    ``policy_updated`` ticks, so with ``"auto"`` a host that never ticks gets lambda = 1.
    ``target``: gamma* in [0, 1] (``bandit_target_mean``, 0.5), or a schedule ``[[tick, rate], ...]``
    over the policy tick, linear between points (``mopps.core.schedule``; saved with the config, so
    it continues after a resume).
    ``strategy``: one of ``STRATEGIES``. ``band``: (low, high) for ``"threshold"`` (0.3, 0.7).
    ``group_size``: rollouts per prompt n, for ``"informative"`` (a draw of k without replacement,
    each candidate weighted by the chance 1 - p^n - (1 - p)^n that its group is mixed, p its
    posterior mean; ``mopps.core.selection.informative_draw``; ``target`` is then unused).
    ``noise_sd``: for ``"perturbed"``, the k nearest ``target`` of the posterior means seen through
    fresh logit noise of this size at every selection (``mopps.core.selection.perturbed_rates``).
    ``explore``: exploration floor in [0, 1], the share of each batch's k chosen uniformly at random
    among the candidates the rule left out (``mopps.core.selection``; a prompt believed at 0 or 1 is
    otherwise never revisited, e.g. after a grader fault is fixed). Default 0: the paper's MoPPS.
    With ``explore = e > 0`` a candidate the rule never takes is chosen with probability at least
    e k / (n - k + ceil(e k)) per batch in which it is one of the n candidates. Recommended: 0.05 for long runs in
    which a grader, the data or the policy may change.
    ``seed``: seed of the selector's generator (its state is saved with the selector).
    """


    def __init__(self, prior=(1.0, 1.0), discount: float = 1.0, target: float = 0.5,
                 strategy: str = "topk", band=(0.3, 0.7), explore: float = 0.0, group_size: int = 8,
                 noise_sd: float = 1.0, seed: int | None = 0) -> None:
        prior_alpha, prior_beta = _check_prior(prior)
        self.discount = "auto" if isinstance(discount, str) and discount == "auto" else _check_discount(discount)
        self.target = check_target(target)
        self.strategy = check_choice(strategy, "strategy", STRATEGIES)
        self.band = check_band(band)
        self.group_size = check_integer(group_size, "group_size", minimum=2)
        self.noise_sd = check_number(noise_sd, "noise_sd", minimum=0.0)
        self.explore = check_probability(explore, "explore")
        if self.explore and strategy == "uniform":
            raise ValueError(f"explore = {explore}; the 'uniform' strategy chooses at random already "
                             "(explore must be 0)")
        self.prior = (prior_alpha, prior_beta)
        self._lookup = IdLookup()  # id -> slot of ``state.ids``, derived, never saved
        super().__init__(seed)

    def __len__(self) -> int:
        """Number of prompts with a posterior entry (observed or given an offline prior)."""
        return len(self.state.alpha)

    def nbytes(self) -> int:
        """Bytes of array memory of the learned state and its id look-up (string ids not counted)."""
        return table.nbytes(self.state, self._lookup)

    # -- queries -----------------------------------------------------------------------------------

    def posterior(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, beta)`` float arrays (m,) of ``ids``; unseen ids report the prior."""
        kind, normalized = normalize_ids(ids, "ids")
        self._check_kind(kind, "ids")
        return self._gather(self.state, kind, normalized)

    def drift_variance(self) -> float | None:
        """With ``discount="auto"``: the learned drift variance of success logits, logit^2 per policy
        tick (``mopps.core.drift``); None with a fixed discount."""
        if self.discount != "auto":
            return None
        return drift_variance(self.state.drift_excess, self.state.drift_gaps)

    def _gather(self, state, kind, ids) -> tuple[np.ndarray, np.ndarray]:
        """The posteriors of ``ids`` now: as stored, or, with learned forgetting, aged to this tick."""
        if self.discount == "auto":
            return table.gather_aged(state, self._lookup, kind, ids, self.tick, *self.prior)
        return table.gather(state, self._lookup, kind, ids, *self.prior)

    def predict(self, ids) -> np.ndarray:
        """Posterior mean success rate, float (m,)."""
        return posterior_mean(*self.posterior(ids))

    def credible_interval(self, ids, mass: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval of each id's success rate: ``(lower (m,), upper (m,))``."""
        return credible_interval(*self.posterior(ids), mass=mass)

    # -- offline prior -----------------------------------------------------------------------------

    def initialize_from_pass_counts(self, ids, successes, trials, weight: float = 3.0,
                                    as_prior: bool = False) -> None:
        """Seed posteriors from base-model pass counts (the reference's ``bandit_init``).

        For each prompt: alpha = alpha0 + weight * successes, beta = beta0 + weight * (trials -
        successes) (the reference uses weight 3). ``ids`` must be unique; ``successes``/``trials`` as
        in ``update``. It overwrites any evidence already gathered for these ids. With ``as_prior=True`` these values also become the prompts' own prior, so the
        discount pulls toward them instead of toward (alpha0, beta0).
        """
        kind, normalized = normalize_ids(ids, "ids")
        successes, trials = check_observations(successes, trials)
        check_same_length(ids=normalized, successes=successes)
        self._check_kind(kind, "ids")
        weight = check_number(number_from_text(weight), "weight", minimum=0.0)
        require_unique(kind, normalized, lambda position: f"ids[{position}]")
        if kind is None:
            return
        alpha = self.prior[0] + weight * successes
        beta = self.prior[1] + weight * (trials - successes)
        overflow = ~(np.isfinite(alpha) & np.isfinite(beta))
        if overflow.any():
            position = int(np.argmax(overflow))
            raise ValueError(f"weight = {weight} makes the prior of ids[{position}] infinite; use a smaller weight")
        self.state = table.assign(self._writable_state(), self._lookup, kind, normalized, alpha, beta, as_prior,
                                  *self.prior)

    # -- protocol hooks ----------------------------------------------------------------------------

    def initial_state(self) -> PosteriorState:
        return table.empty_posteriors(tracked=self.discount == "auto")

    def _choose(self, state, kind, ids, k, rng):
        alpha, beta = self._gather(state, kind, ids)
        predicted = posterior_mean(alpha, beta)
        if self.strategy == "uniform":
            index, scores = uniform_choice(len(predicted), k, rng)
            return index, scores, predicted
        target = target_at(self.target, self.tick)
        explored = exploration_slots(k, self.explore, rng) if self.explore else 0
        by_rule = k - explored
        if self.strategy == "informative":
            index, scores = informative_draw(predicted, by_rule, self.group_size, rng)
            return with_exploration(index, len(scores), explored, rng), scores, predicted
        if self.strategy == "perturbed":
            scores = perturbed_rates(predicted, self.noise_sd, rng)
        else:
            scores = predicted if self.strategy == "greedy_mean" else thompson_sample(alpha, beta, rng)
        if self.strategy in ("topk", "greedy_mean", "perturbed"):
            index = topk_toward_target(scores, by_rule, target)
        elif self.strategy == "threshold":
            index = threshold_band(scores, by_rule, self.band, rng)
        else:
            index = largest_learnability(scores, by_rule)
        return with_exploration(index, len(scores), explored, rng), scores, predicted

    def _observe(self, state, kind, ids, successes, trials) -> PosteriorState:
        if self.discount == "auto":
            return table.observe_tracked(state, self._lookup, kind, ids, successes, trials, self.tick, *self.prior)
        return table.observe(state, self._lookup, kind, ids, successes, trials, self.discount, *self.prior)

    def _config(self) -> dict[str, Any]:
        config = {
            "prior": list(self.prior),
            "discount": self.discount,
            "target": self.target,
            "strategy": self.strategy,
            "band": list(self.band),
        }
        # Options newer than the state format are written only when set, so a default selector's saved
        # config (and every file saved before them) stays what it was.
        if self.explore:
            config["explore"] = self.explore
        if self.strategy == "informative":
            config["group_size"] = self.group_size
        if self.strategy == "perturbed":
            config["noise_sd"] = self.noise_sd
        return config

    def _restore(self, arrays: dict[str, Any]) -> PosteriorState:
        return _posteriors_from_arrays(arrays, tracked=self.discount == "auto")


class Uniform(MoPPS):
    """Uniformly random selection (the paper's main baseline). It keeps the same Beta posteriors as
    MoPPS, so its predictions can be logged and compared, but they never influence the choice."""


    def __init__(self, prior=(1.0, 1.0), discount: float = 1.0, seed: int | None = 0) -> None:
        super().__init__(prior=prior, discount=discount, strategy="uniform", seed=seed)

    def _config(self) -> dict[str, Any]:
        return {"prior": list(self.prior), "discount": self.discount}


def _check_prior(prior) -> tuple[float, float]:
    """``prior`` as ``(alpha0, beta0)``, each a Beta parameter (``check_positive``)."""
    try:
        prior_alpha, prior_beta = (float(value) for value in prior)
    except (TypeError, ValueError):
        raise ValueError(f"prior = {prior!r}; prior must be a pair (alpha0, beta0)") from None
    return check_positive(prior_alpha, "prior[0]"), check_positive(prior_beta, "prior[1]")


def _check_discount(discount) -> float:
    """A fixed discount: a probability (``check_probability``); the text it may also be is 'auto'."""
    if isinstance(discount, str):
        raise ValueError(f"discount = {discount!r}; discount must be a number in [0, 1] or 'auto'")
    return check_probability(discount, "discount")


def _posteriors_from_arrays(arrays: dict[str, Any], tracked: bool = False) -> PosteriorState:
    """Validate a saved ``PosteriorState`` (as a dict) and rebuild it (ValueError on any inconsistency);
    ``tracked``: it must hold the learned-forgetting fields (``discount="auto"``), else none."""
    kind = arrays["id_kind"]
    ids = check_saved_ids(kind, arrays["ids"])
    # Files of version 1 omit the per-prompt priors when there are none; records hold None.
    has_prompt_prior = arrays.get("prompt_prior_alpha") is not None or arrays.get("prompt_prior_beta") is not None
    names = ("alpha", "beta") + (("prompt_prior_alpha", "prompt_prior_beta") if has_prompt_prior else ())
    columns = {}
    for name in names:
        values = as_float_array(arrays[name], name)
        if len(values) != len(ids):
            raise ValueError(f"len({name}) = {len(values)} but len(ids) = {len(ids)}")
        if len(values) and values.min() <= 0.0:
            raise ValueError(f"{name} has a value <= 0; Beta parameters must be > 0")
        columns[name] = values.copy()
    tracked_names = ("last_tick", "drift_excess", "drift_gaps")
    if not tracked:
        present = [name for name in tracked_names if arrays.get(name) is not None]
        if present:
            raise ValueError(f"{present[0]} is set but this selector's discount is fixed (it belongs to "
                             "discount='auto')")
        return PosteriorState(kind, ids, **columns)
    last_tick = np.asarray(arrays["last_tick"])
    if last_tick.dtype.kind not in "iu" or last_tick.shape != (len(ids),) or (len(last_tick) and last_tick.min() < -1):
        raise ValueError(f"last_tick must be {len(ids)} integers >= -1")
    sums = {"drift_excess": check_number(arrays["drift_excess"], "drift_excess"),
            "drift_gaps": check_number(arrays["drift_gaps"], "drift_gaps", minimum=0.0)}
    return PosteriorState(kind, ids, **columns, last_tick=last_tick.astype(np.int64), **sums)
