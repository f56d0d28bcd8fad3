"""``ReferenceSettings``: the MoPPS reference's ``tasksampler.*`` settings, one definition for every adapter.

The TRL config (``mopps.integrations.trl.MoPPSGRPOConfig``, a ``GRPOConfig`` with these fields) and
the verl ``mopps.*`` block (``mopps.integrations.verl.config.MoPPSVerlConfig``) both extend this
dataclass with their own framework fields, so a key means the same thing, with the same default and
the same ``help``, in both. Names follow the reference (thu-rllab/MoPPS), so a value copied from the
paper's scripts means the same thing here:

==============================  ==================================================================
reference ``tasksampler.*``     here
==============================  ==================================================================
``ts_ratio``                    ``ts_ratio``: candidates per step / prompts per step
``framework`` (4 / 0)           ``bandit_sample_strategy`` ("topk"/"threshold"/... or "uniform")
``bandit_target_mean``          ``bandit_target_mean``: gamma*, the success rate aimed at
``bandit_decay_ratio``          ``bandit_decay_ratio``: lambda; 1.0 = plain counting
``bandit_lower_bound``/``upper``  the "threshold" band
``bandit_no_update``            ``bandit_no_update``: keep the prior, never learn
``bandit_init`` + dir           ``bandit_init_path`` + ``bandit_init_weight``: pass-count prior file
``bandit_load_dir``             ``bandit_load_path``: a ``MoPPS.save`` file to start from
``acc >= 1``                    ``success_rule`` + ``success_threshold`` (+ the adapter's choice of
                                the judged value)
(none)                          ``selector_class`` + ``selector_kwargs``: any ``mopps.Selector``
                                instead of the built-in MoPPS; ``features_path`` / ``features_column``:
                                per-prompt features for selectors that take them
(DAPO's ``max_num_gen_batches``)  ``max_num_gen_batches``: dynamic sampling through ``mopps.Refill``;
                                ``dynamic_sampling_at_cap``: what is trained at its cap
(none)                          ``rollout_allocation``: pilot / choose / commit per step
                                (``mopps.loop.Allocation``) and ``rollout_allocation_group_size``
==============================  ==================================================================

Defaults are neutral, those of ``mopps.MoPPS``; the paper tunes two per task: ``ts_ratio`` 8 and
``bandit_decay_ratio`` 0.5 for Countdown and Geo3k, ``ts_ratio`` 16 and ``bandit_decay_ratio`` 1.0
for MATH.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from mopps.core.evidence import SuccessRule
from mopps.core.id_index import STR_KIND, normalize_ids
from mopps.core.selection import ALLOCATION_RULES, AT_CAP
from mopps.core.validation import (
    check_choice,
    check_flag,
    check_integer,
    check_number,
    check_ordered,
    check_positive,
    check_probability,
    check_seed,
    number_from_text,
)
from mopps.selectors.base import Selector
from mopps.selectors.mopps import STRATEGIES, MoPPS
from mopps.storage import load_state

# The fields that configure the built-in MoPPS; with another selector they would silently mean nothing.
MOPPS_FIELDS = ("bandit_sample_strategy", "bandit_target_mean", "bandit_decay_ratio", "bandit_lower_bound",
                "bandit_upper_bound", "prior_alpha", "prior_beta")


def help_field(default, help: str):
    """A field whose meaning is its ``help`` metadata (what ``transformers.HfArgumentParser`` and
    ``trl.TrlParser`` print for ``--help``): the one place a setting is explained."""
    return field(default=default, metadata={"help": help})


@dataclass
class ReferenceSettings:
    """The reference's selection settings, validated on construction (errors name the field).

    Each field's meaning is its ``help`` (below). The MoPPS fields (``MOPPS_FIELDS``) are the
    arguments ``strategy``, ``target``, ``discount``, ``band`` and ``prior`` of ``mopps.MoPPS``. A
    checkpoint the framework resumes from wins over ``bandit_init_path`` and ``bandit_load_path``.
    """

    ts_ratio: float = help_field(
        8.0, "Candidates per step / prompts per step: each step draws round(ts_ratio * B) candidate prompts and the "
             "selector keeps B (paper: 8 Countdown/Geo3k, 16 MATH); 1 turns selection off.")
    bandit_sample_strategy: str = help_field(
        "topk", f"How MoPPS picks from its posterior draws: one of {STRATEGIES} ('uniform' = the reference's "
                "framework 0).")
    bandit_target_mean: float = help_field(
        0.5, "Target success rate gamma* in [0, 1]: 'topk' keeps the prompts whose drawn rate is closest to it.")
    bandit_decay_ratio: float = help_field(
        1.0, "Discount lambda in [0, 1] of old evidence per update (paper: 0.5 Countdown/Geo3k, 1.0 MATH); "
             "1.0 = plain counting.")
    bandit_lower_bound: float = help_field(0.3, "Lower end of the 'threshold' strategy's band of drawn rates.")
    bandit_upper_bound: float = help_field(0.7, "Upper end of the 'threshold' strategy's band of drawn rates.")
    bandit_no_update: bool = help_field(
        False, "Never update the posteriors (the reference's ablation switch); predictions are still logged.")
    prior_alpha: float = help_field(1.0, "alpha of the Beta prior of an unseen prompt (> 0).")
    prior_beta: float = help_field(1.0, "beta of the Beta prior of an unseen prompt (> 0).")
    bandit_init_path: str | None = help_field(
        None, "JSON file {prompt_id: [0/1 result of each base-model sample]} (the reference's index_score.json), "
              "keyed by the adapter's prompt ids; its pass counts seed the posteriors "
              "(MoPPS.initialize_from_pass_counts). None or empty = no prior.")
    bandit_init_weight: float = help_field(3.0, "Pseudo-count weight of the bandit_init_path prior (reference: 3).")
    bandit_load_path: str | None = help_field(
        None, "A file written by Selector.save to start from (not with bandit_init_path). None or empty = fresh.")
    success_rule: str = help_field(
        "threshold", "How one rollout's judged value becomes a success: 'threshold' (value >= success_threshold), "
                     "'sign' (value > 0) or 'fraction' (value in [0, 1] counts fractionally).")
    success_threshold: float = help_field(1.0, "Threshold of the 'threshold' rule (the reference counts acc >= 1).")
    seed: int | None = help_field(
        None, "Seed of the selector's generator and of the candidate order; None = the adapter's default "
              "(TRL: GRPOConfig.seed, verl: 0).")
    selector_class: str | None = help_field(
        None, "Import path of a mopps.Selector subclass to use instead of the built-in MoPPS ('mopps.ContextualMoPPS', "
              "'my_pkg.module:MySelector'); then the MoPPS fields must keep their defaults. None or empty = MoPPS.")
    selector_kwargs: dict | str | None = help_field(
        None, "Constructor keywords of selector_class (a mapping, or the same as JSON text); seed defaults to the "
              "seed above.")
    features_path: str | None = help_field(
        None, "Feature file (mopps.features, e.g. from `mopps features`) keyed by the adapter's prompt ids, handed "
              "to a selector that takes features (add_features). None or empty = none.")
    features_column: str | None = help_field(
        None, "Dataset column holding one float vector per prompt, handed to a selector that takes features. Not "
              "with features_path (a prompt's features come from one source).")

    evidence_log: str | None = help_field(
        None, "Path of the evidence log this run writes (every selection, prediction and outcome; `mopps replay "
              "LOG` scores any selector on it offline). Written at each checkpoint and when training ends; a "
              "resumed run continues it. None or empty = no log.")

    max_num_gen_batches: int = help_field(
        0, "Dynamic sampling (DAPO's, through mopps.Refill): 0 = off; n >= 1 = each step rolls out generation "
           "batches of B prompts, each chosen by the selector, keeping groups whose successes are not all equal, "
           "until B are kept or n batches were rolled out (the reference's cap: 4 MATH, 10 Countdown/Geo3k).")
    dynamic_sampling_at_cap: str = help_field(
        "fill", "With max_num_gen_batches >= 1, what is trained when the cap is hit before B informative groups "
                "were kept (mopps.RefillResult.trained_groups): 'fill' = the kept groups plus rolled-out groups that "
                "were not kept, with their advantages set to 0 (they keep the batch shape and teach nothing), "
                "'repeat' = the kept groups repeated in order (every trained group informative; with none kept, as "
                "'fill'; TRL only), 'raise' = stop with an error (verl's DAPO).")

    rollout_allocation: str | None = help_field(
        None, f"Rollout allocation (mopps.loop.Allocation): one of {ALLOCATION_RULES}, or None = off. Each step then "
              "pilots candidates with part of a group, lets the evidence reach the selector, chooses whom to train "
              "and completes their groups (pilot rollouts stay in the group). 'mopps_pilot' (ours): the selector "
              "chooses, a prompt whose pilot makes the rest of its group likely wasted is replaced; 'pilot_commit', "
              "'speed_rl', 'reinforce_ada': the published rules. Not with max_num_gen_batches.")
    rollout_allocation_group_size: int | None = help_field(
        None, "With rollout_allocation: rollouts per trained prompt (n), a multiple of every round the rule asks "
              "for; None = the rule's default for the host (TRL: num_generations / the rule's pilot share).")

    def __post_init__(self) -> None:
        # Each field is checked by the rule of the argument it becomes (core.validation), under its own
        # name: ts_ratio as SelectionLoop's, the bandit_* and prior_* fields as MoPPS's. Numbers may
        # arrive as text (YAML, a command line), so text is read as a number first.
        self.ts_ratio = check_number(number_from_text(self.ts_ratio), "ts_ratio", minimum=1.0)
        check_choice(self.bandit_sample_strategy, "bandit_sample_strategy", STRATEGIES)
        for name in ("bandit_target_mean", "bandit_decay_ratio", "bandit_lower_bound", "bandit_upper_bound"):
            setattr(self, name, check_probability(number_from_text(getattr(self, name)), name))
        check_ordered(self.bandit_lower_bound, self.bandit_upper_bound, "bandit_lower_bound", "bandit_upper_bound")
        self.bandit_no_update = check_flag(self.bandit_no_update, "bandit_no_update")
        for name in ("prior_alpha", "prior_beta"):
            setattr(self, name, check_positive(number_from_text(getattr(self, name)), name))
        self.bandit_init_weight = check_number(number_from_text(self.bandit_init_weight), "bandit_init_weight",
                                               minimum=0.0)
        if self.bandit_init_path and self.bandit_load_path:
            raise ValueError(
                f"bandit_init_path = {self.bandit_init_path!r} and bandit_load_path = {self.bandit_load_path!r} "
                "are both set; start either from a pass-count prior or from a saved selector"
            )
        self.seed = check_seed(self.seed)
        self.max_num_gen_batches = check_integer(self.max_num_gen_batches, "max_num_gen_batches")
        check_choice(self.dynamic_sampling_at_cap, "dynamic_sampling_at_cap", AT_CAP)
        if self.rollout_allocation is not None:
            check_choice(self.rollout_allocation, "rollout_allocation", ALLOCATION_RULES)
            if self.max_num_gen_batches:
                raise ValueError(f"rollout_allocation = {self.rollout_allocation!r} and max_num_gen_batches = "
                                 f"{self.max_num_gen_batches} are both set; a step either allocates rollouts or "
                                 "refills generation batches")
        if self.rollout_allocation_group_size is not None:
            self.rollout_allocation_group_size = check_integer(self.rollout_allocation_group_size,
                                                               "rollout_allocation_group_size", minimum=2)
        try:
            self.build_success_rule()
        except ValueError as error:
            raise ValueError(f"success_rule / success_threshold: {error}") from None
        self.selector_kwargs = _keywords(self.selector_kwargs)
        if self.selector_kwargs and not self.selector_class:
            raise ValueError(f"selector_kwargs = {self.selector_kwargs!r} but selector_class is not set; "
                             "name the selector they are for")
        for name in ("selector_class", "features_path", "features_column", "evidence_log"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} = {value!r}; {name} must be a string (or None)")
        if self.features_path and self.features_column:
            raise ValueError(f"features_path = {self.features_path!r} and features_column = {self.features_column!r} "
                             "are both set; take each prompt's features from one source")

    # -- what the settings build -------------------------------------------------------------------

    def seed_or(self, default: int) -> int:
        """``seed``, or ``default`` when it is None."""
        return int(self.seed) if self.seed is not None else int(default)

    def num_candidates(self, prompts_per_step: int, available: int | None = None) -> int:
        """Candidates drawn per step: ``round(ts_ratio * prompts_per_step)``, at most ``available``."""
        count = int(round(self.ts_ratio * prompts_per_step))
        return count if available is None else min(count, available)

    def build_success_rule(self) -> SuccessRule:
        """The ``SuccessRule`` that turns one rollout's judged value into a success."""
        return SuccessRule(self.success_rule, self.success_threshold)

    def build_selector(self, default_seed: int = 0, selector: Selector | None = None) -> Selector:
        """The starting selector: ``selector`` if given (a ready ``mopps.Selector``), else one of
        ``selector_class``, else the built-in ``MoPPS`` configured by the ``bandit_*`` fields; then
        restored from ``bandit_load_path`` when set.

        ``default_seed`` is used when ``seed`` is None. Raises ``ValueError`` when a ready selector
        and ``selector_class`` are both given, when, with either, a MoPPS field differs from its
        default (it would configure nothing), or when ``features_column`` / ``features_path`` is set
        for a selector without ``add_features`` (the features would be dropped). The pass-count prior (``bandit_init_path``) needs the
        adapter's prompt ids; apply it with ``apply_prior_file``.
        """
        if selector is not None:
            if not isinstance(selector, Selector):
                raise ValueError(f"selector is a {type(selector).__name__}; it must be a mopps.Selector")
            if self.selector_class:
                raise ValueError(f"a ready selector ({type(selector).__name__}) and selector_class = "
                                 f"{self.selector_class!r} are both given; pass one")
            self._refuse_mopps_fields(f"a ready selector ({type(selector).__name__}) is given")
        elif self.selector_class:
            self._refuse_mopps_fields(f"selector_class = {self.selector_class!r}")
            keywords = {"seed": self.seed_or(default_seed), **self.selector_kwargs}
            try:
                selector = selector_type(self.selector_class)(**keywords)
            except TypeError as error:
                raise ValueError(f"selector_class = {self.selector_class!r} refused selector_kwargs = "
                                 f"{self.selector_kwargs!r}: {error}") from None
        else:
            selector = MoPPS(prior=(self.prior_alpha, self.prior_beta), discount=self.bandit_decay_ratio,
                             target=self.bandit_target_mean, strategy=self.bandit_sample_strategy,
                             band=(self.bandit_lower_bound, self.bandit_upper_bound),
                             seed=self.seed_or(default_seed))
        # Features for a selector that cannot take them would be read and dropped: say so instead.
        for name in ("features_column", "features_path"):
            if getattr(self, name) and not hasattr(selector, "add_features"):
                raise ValueError(f"{name} = {getattr(self, name)!r} is set but {type(selector).__name__} takes no "
                                 "features; use a selector that does (selector_class='mopps.ContextualMoPPS', or "
                                 "a ready one) or unset it")
        if self.bandit_load_path:
            selector.load_state_dict(load_state(self.bandit_load_path))
        return selector

    def _refuse_mopps_fields(self, reason: str) -> None:
        """``ValueError`` naming the first MoPPS field that differs from its default."""
        defaults = {entry.name: entry.default for entry in fields(type(self))}
        for name in MOPPS_FIELDS:
            if getattr(self, name) != defaults[name]:
                raise ValueError(
                    f"{name} = {getattr(self, name)!r} configures the built-in MoPPS, but {reason}; give that "
                    f"selector its own arguments (selector_kwargs) and leave {name} at its default {defaults[name]!r}"
                )

    def apply_prior_file(self, selector, prompt_ids, where: str = "this dataset") -> None:
        """Seed ``selector`` from ``bandit_init_path`` (no-op when unset).

        ``prompt_ids``: the prompt ids the adapter will offer (int >= 0 array or list of str); the
        file's keys are read as ids of the same kind. ``where`` says where those ids come from, for
        errors. Raises ``ValueError`` when the selector cannot take a prior, a key is not an id of
        that kind, or no key is one of ``prompt_ids`` (the prior would silently seed nothing).
        """
        path = self.bandit_init_path
        if not path:
            return
        initialize = getattr(selector, "initialize_from_pass_counts", None)
        if initialize is None:
            raise ValueError(
                f"bandit_init_path = {path!r} but {type(selector).__name__} cannot take an offline prior"
            )
        kind, known = normalize_ids(prompt_ids, "prompt_ids")
        keys, successes, trials = read_pass_counts(path)
        if kind == STR_KIND:
            ids = keys
            matched = not set(ids).isdisjoint(known)
        else:
            not_integer = [key for key in keys if not key.isdecimal()]
            if not_integer:
                raise ValueError(
                    f"bandit_init_path = {path!r} has the key {not_integer[0]!r}, but prompt ids here are "
                    f"integers ({where})"
                )
            ids = [int(key) for key in keys]
            matched = bool(np.isin(np.asarray(ids, dtype=np.int64), known).any())
        if not matched:
            # Keyed by other ids (e.g. the reference's extra_info.index against content-hash ids) the
            # prior would seed prompts that never occur, and the run would silently start flat.
            example = list(known[:1]) if kind == STR_KIND else np.asarray(known[:1]).tolist()
            raise ValueError(
                f"bandit_init_path = {path!r}: none of its {len(ids)} prompt ids (e.g. {keys[:1]}) is a prompt id "
                f"here ({where}, e.g. {example}); key the file by the same prompt ids"
            )
        initialize(ids, successes, trials, weight=self.bandit_init_weight)


def read_pass_counts(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read a pass-count file ``{prompt_id: [result, ...]}`` (results 0/1 or fractions in [0, 1]).

    Returns ``(keys, successes, trials)``: the prompt ids as the file's string keys (m,);
    ``successes`` float (m,) = sum of results; ``trials`` float (m,) = number of results.
    Raises ``ValueError`` naming the bad key.
    """
    with open(Path(path), encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object {{prompt_id: [results]}}, got {type(data).__name__}")
    keys = list(data)
    successes = np.zeros(len(keys))
    trials = np.zeros(len(keys))
    for position, key in enumerate(keys):
        results = data[key]
        if not isinstance(results, list) or not results:
            raise ValueError(f"{path}: entry {key!r} must be a non-empty list of results")
        values = np.asarray(results, dtype=np.float64)
        if not np.all((values >= 0.0) & (values <= 1.0)):
            raise ValueError(f"{path}: entry {key!r} has a result outside [0, 1]")
        successes[position] = values.sum()
        trials[position] = len(values)
    return keys, successes, trials


def selector_type(path: str) -> type:
    """The ``mopps.Selector`` subclass named by ``path``: ``"package.module:Name"`` or
    ``"package.module.Name"`` (``"mopps.ContextualMoPPS"``). ``ValueError`` if it cannot be imported
    or is not a selector class."""
    module_name, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name) if module_name and name else None
    except (ImportError, AttributeError) as error:
        raise ValueError(f"selector_class = {path!r} cannot be imported: {error}") from None
    if not (isinstance(found, type) and issubclass(found, Selector)):
        raise ValueError(f"selector_class = {path!r} is {found!r}, not a mopps.Selector subclass")
    return found


def _keywords(value) -> dict:
    """``selector_kwargs`` as a plain dict: a mapping, JSON text of an object, or None/"" (= {})."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"selector_kwargs = {value!r} is not JSON: {error}") from None
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"selector_kwargs = {value!r}; it must map argument names to values")
    return dict(value)

