"""The selectors the testbed compares, by name, as the bench's ``--selectors`` spells them.

``candidates`` is how many candidates per trained prompt a method draws from the shuffled stream
(the reference's ``ts_ratio`` for MoPPS and the oracle; 1 for Uniform, whose random pick from more
candidates would be the same distribution). DS is Uniform choosing each generation batch of
``mopps.Refill`` (DAPO's dynamic sampling), at most ``max_num_gen_batches`` of them per step;
``mopps_ds`` and ``contextual_ds`` are the same refill with each generation batch pre-selected from
``ts_ratio`` times as many candidates. ``features`` names the per-prompt features the run registers
with the selector before training (``mopps.testbed.features``), or None.

``mopps_auto`` is MoPPS with learned forgetting (``discount="auto"``). ``mopps_perturbed`` and
``contextual_perturbed`` rank their point predictions seen through fresh logit noise at every step
(``strategy="perturbed"``) instead of a Thompson draw.
The rollout-allocation methods (``mopps.loop.Allocation``; docs/allocation.md) pilot, choose and
commit every step: ``pilot_commit``, ``speed_rl``, ``reinforce_ada`` (the published rules, with
Uniform's candidates), ``mopps_pilot`` (ours, MoPPS lambda = 0.5 choosing; ``mopps_pilot:<share>:<rounds>``
sets its pilot share and rounds) and ``mopps_pilot_drop`` (ours, dropping instead of replacing).
``mopps_informative`` and ``contextual_informative`` draw the batch in proportion to the predicted
chance that a group is mixed instead of taking the k nearest 0.5 (``strategy="informative"``).

The gain-curve instruments (``mopps.testbed.instruments``; not selectors a user would run) are named
with parameters: ``oracle_noise:<kind>:<sd>`` (kind ``fresh``, ``persistent`` or ``visit``, sd in
logit units), ``oracle_pilot:<m>`` (m fresh rollouts per candidate, counted as rollouts), and
``oracle_informative``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mopps.core.validation import check_choice
from mopps.loop.allocation import PilotCommit, PosteriorPilot, ReinforceAda, SpeedScreen
from mopps.selectors import ContextualMoPPS, HistoryFilter, MoPPS, Oracle, Selector, Uniform
from mopps.testbed.instruments import NOISE_KINDS, InformativeOracle, NoisyOracle, PilotOracle

METHODS = ("uniform", "ds", "mopps", "mopps_lambda0.5", "mopps_threshold", "history", "oracle", "contextual",
           "contextual_nofeatures", "contextual_taskfeatures", "mopps_ds", "contextual_ds", "mopps_informative",
           "contextual_informative", "oracle_informative", "mopps_auto", "mopps_perturbed",
           "contextual_perturbed", "uniform_wide", "pilot_commit", "speed_rl", "reinforce_ada", "mopps_pilot", "mopps_pilot_drop")
# Fresh logit noise of the "perturbed" strategy in the bench methods (chosen on seeds 100-101, see
# docs/mechanism.md).
PERTURBED_NOISE_SD = 1.0
# Instruments with parameters: the name's prefix, then the parameters after ':'.
INSTRUMENT_PATTERNS = ("oracle_noise:<fresh|persistent|visit>:<sd>", "oracle_pilot:<m>", "mopps_perturbed:<sd>",
                       "contextual_perturbed:<sd>", "mopps_pilot:<pilot fraction>:<max rounds>")
# The gain curve's default points: three noise kinds x three sizes, and the pilot estimate from 8 rollouts.
GAIN_CURVE = tuple(f"oracle_noise:{kind}:{sd}" for kind in NOISE_KINDS for sd in ("0.5", "1", "2")) \
    + ("oracle_pilot:8", "oracle_informative")


@dataclass(frozen=True)
class Method:
    """A selector built for one run, the number of candidates it draws per trained prompt, the
    refill cap of dynamic sampling (None: the run trains on the one batch the selector chose), and
    the features it gets (``mopps.testbed.features.FEATURE_SOURCES``, or None)."""

    selector: Selector
    candidates: int
    max_num_gen_batches: int | None = None
    features: str | None = None
    screening_rollouts: int = 0  # rollouts spent per candidate before selection (the pilot oracle)
    allocation: object | None = None  # a rule of mopps.loop.allocation: the run allocates rollouts per step


def is_method(name: str) -> bool:
    """Whether ``name`` is one of ``METHODS`` or a well-formed instrument name."""
    try:
        parse_instrument(name)
    except ValueError:
        return False
    return True


def parse_instrument(name: str) -> tuple[str, tuple]:
    """``(prefix, parameters)`` of a method name: ``("oracle_noise", (kind, sd))``,
    ``("oracle_pilot", (m,))``, or ``(name, ())`` for a name of ``METHODS``; ``ValueError`` naming the
    method otherwise."""
    prefix, _, rest = name.partition(":")
    parts = rest.split(":") if rest else []
    try:
        if prefix == "oracle_noise" and len(parts) == 2 and parts[0] in NOISE_KINDS:
            sd = float(parts[1])
            if np.isfinite(sd) and sd >= 0.0:
                return prefix, (parts[0], sd)
        elif prefix == "oracle_pilot" and len(parts) == 1 and int(parts[0]) >= 1:
            return prefix, (int(parts[0]),)
        elif prefix in ("mopps_perturbed", "contextual_perturbed") and len(parts) == 1:
            sd = float(parts[0])
            if np.isfinite(sd) and sd >= 0.0:
                return prefix, (sd,)
        elif prefix == "mopps_pilot" and len(parts) == 2:
            fraction, rounds = float(parts[0]), int(parts[1])
            if 0.0 < fraction < 1.0 and rounds >= 1:
                return prefix, (fraction, rounds)
        elif not parts and name in METHODS:
            return name, ()
    except ValueError:
        pass
    check_choice(name, "method (sd >= 0, m >= 1 in an instrument's name)", METHODS + INSTRUMENT_PATTERNS)
    raise ValueError(f"method = {name!r} is not a well-formed instrument name {INSTRUMENT_PATTERNS}")


def build_method(name: str, seed: int, ts_ratio: int, ds_max_gen_batches: int,
                 success_rate: Callable[[np.ndarray], np.ndarray], num_prompts: int = 1,
                 group_size: int = 8) -> Method:
    """The selector called ``name`` (one of ``METHODS`` or an instrument name), seeded with ``seed``.

    ``success_rate(ids)`` returns exact success rates of pool ids under the current policy; only the
    oracles use it. ``num_prompts``: pool size (ids 0 .. num_prompts - 1; the noisy oracles keep a
    noise per prompt); ``group_size``: rollouts per prompt n.
    """
    prefix, parameters = parse_instrument(name)
    if prefix == "oracle_noise":
        kind, sd = parameters
        return Method(NoisyOracle(success_rate, kind, sd, num_prompts, seed=seed), ts_ratio)
    if prefix == "oracle_pilot":
        (rollouts,) = parameters
        return Method(PilotOracle(success_rate, rollouts, seed=seed), ts_ratio, screening_rollouts=rollouts)
    if name == "oracle_informative":
        return Method(InformativeOracle(success_rate, group_size, seed=seed), ts_ratio)
    if name == "mopps_auto":
        # Learned forgetting: the drift of each prompt's rate is estimated from the run (issue 18).
        return Method(MoPPS(discount="auto", strategy="topk", seed=seed), ts_ratio)
    if prefix == "mopps_perturbed":
        sd = parameters[0] if parameters else PERTURBED_NOISE_SD
        return Method(MoPPS(discount=0.5, strategy="perturbed", noise_sd=sd, seed=seed), ts_ratio)
    if prefix == "contextual_perturbed":
        sd = parameters[0] if parameters else PERTURBED_NOISE_SD
        return Method(ContextualMoPPS(strategy="perturbed", noise_sd=sd, seed=seed), ts_ratio, features="generic")
    if name == "mopps_informative":
        return Method(MoPPS(discount=0.5, strategy="informative", group_size=group_size, seed=seed), ts_ratio)
    if name == "contextual_informative":
        return Method(ContextualMoPPS(strategy="informative", group_size=group_size, seed=seed), ts_ratio,
                      features="generic")
    if name == "pilot_commit":
        return Method(Uniform(seed=seed), 1, allocation=PilotCommit())
    if name == "speed_rl":
        # The screening cap is DS's refill cap: both stop after that many generation batches of B.
        return Method(Uniform(seed=seed), 1, allocation=SpeedScreen(max_rounds=ds_max_gen_batches))
    if name == "reinforce_ada":
        return Method(Uniform(seed=seed), 1, allocation=ReinforceAda())
    if name == "mopps_pilot_drop":
        # Ours, dropping instead of replacing a prompt whose pilot says the rest of its group is wasted.
        return Method(MoPPS(discount=0.5, strategy="topk", seed=seed), ts_ratio,
                      allocation=PosteriorPilot(replace=False))
    if prefix == "mopps_pilot":
        # MoPPS lambda = 0.5 (the paper's Countdown setting, our best rollout-free MoPPS on recurring).
        rule = PosteriorPilot(*parameters) if parameters else PosteriorPilot()
        return Method(MoPPS(discount=0.5, strategy="topk", seed=seed), ts_ratio, allocation=rule)
    if name == "uniform":
        return Method(Uniform(seed=seed), 1)
    if name == "uniform_wide":
        # Uniform's distribution of batches, drawn from ts_ratio * B candidates: its evidence log offers
        # a replayed selector the same choice a pre-selector had (Uniform's own log offers none).
        return Method(Uniform(seed=seed), ts_ratio)
    if name == "ds":
        return Method(Uniform(seed=seed), 1, max_num_gen_batches=ds_max_gen_batches)
    if name == "mopps":
        return Method(MoPPS(discount=1.0, strategy="topk", seed=seed), ts_ratio)
    if name == "mopps_lambda0.5":
        return Method(MoPPS(discount=0.5, strategy="topk", seed=seed), ts_ratio)
    if name == "mopps_threshold":
        return Method(MoPPS(discount=1.0, strategy="threshold", seed=seed), ts_ratio)
    if name == "history":
        return Method(HistoryFilter(seed=seed), ts_ratio)
    if name == "oracle":
        return Method(Oracle(success_rate=success_rate, seed=seed), ts_ratio)
    if name == "contextual":
        return Method(ContextualMoPPS(seed=seed), ts_ratio, features="generic")
    if name == "contextual_nofeatures":
        return Method(ContextualMoPPS(seed=seed), ts_ratio)
    if name == "contextual_taskfeatures":
        return Method(ContextualMoPPS(seed=seed), ts_ratio, features="task")
    if name == "mopps_ds":
        # lambda = 0.5, the better MoPPS on both presets (docs/results/2026-12-02-selection), choosing each
        # generation batch.
        return Method(MoPPS(discount=0.5, strategy="topk", seed=seed), ts_ratio,
                      max_num_gen_batches=ds_max_gen_batches)
    if name == "contextual_ds":
        return Method(ContextualMoPPS(seed=seed), ts_ratio, max_num_gen_batches=ds_max_gen_batches,
                      features="generic")
    raise NotImplementedError(f"method {name!r} is in METHODS but build_method has no branch for it")
