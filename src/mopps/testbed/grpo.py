"""GRPO on a testbed task (reversed addition, sorting, or yours) with a prompt selector in the loop:
one run, top to bottom.

Read in order: the config (every hyperparameter and its meaning), the prompt pools, then ``run``,
whose loop does per step: the selection loop draws candidates and the selector picks B prompts
(DS: ``Refill`` rolls out generation batches until B informative groups) -> n rollouts each at
temperature 1 -> binary rewards -> the loop updates the selector -> GRPO update (group-normalised
advantages, PPO-clip with clip-higher, ``minibatches`` Adam steps, token-mean loss, no KL) -> metrics
against the exact success rates.

The ground truth that makes this a testbed: every prompt's success probability under the current
policy is computed exactly (``exact_success_rate``), so we can measure how well a selector's
prediction ranks prompts, and test/pool accuracy without sampling noise.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mopps.core.evidence import SuccessRule
from mopps.core.metrics import spearman
from mopps.core.validation import check_choice, check_integer
from mopps.loop import AT_CAP, Allocation, EvidenceLog, Refill, SelectionLoop
from mopps.testbed.features import pool_features
from mopps.testbed.measure import calibration_counts, logit, nearest_by_rate, prediction_scores
from mopps.testbed.methods import build_method
from mopps.testbed.policy import completion_logprobs, exact_success_rate, sample
from mopps.testbed.task import Task, sample_unique, task_key
from mopps.testbed.warmstart import WarmStartConfig, load_warm_start


@dataclass(frozen=True)
class TestbedConfig:
    """Every hyperparameter of one run. The same config is used for every selector."""

    __test__ = False  # a name starting with "Test" that pytest must not collect

    # -- prompts --
    train_pool_size: int = 640  # prompts RL may train on (ids 0..train_pool_size-1)
    test_size: int = 1000  # held-out prompts, disjoint from the pool; test accuracy is their mean exact rate
    pool_seed: int = 1234  # which prompts are in the pool and test set (fixed per preset)
    pool_per_seed: bool = False  # True: each RL seed draws its own pool and test set (pool_seed + seed)
    # -- GRPO, as the paper runs it --
    steps: int = 400  # optimiser steps (= trained batches)
    batch_size: int = 32  # B: prompts per trained batch
    group_size: int = 8  # n: rollouts per prompt at temperature 1
    learning_rate: float = 1e-4  # Adam step size
    minibatches: int = 2  # PPO mini-batch updates per step; >= 2 so the ratio moves and the clip acts
    clip_low: float = 0.2  # PPO ratio floor 1 - clip_low
    clip_high: float = 0.28  # PPO ratio ceiling 1 + clip_high (DAPO's clip-higher)
    max_grad_norm: float = 1.0  # gradient clipping per mini-batch step (verl default)
    advantage_eps: float = 1e-6  # added to the group std before dividing
    # -- selection --
    ts_ratio: int = 8  # candidates per trained prompt for MoPPS / oracle / history (B_hat = ts_ratio * B)
    ds_max_gen_batches: int = 10  # DS refill cap: generation batches of B per step at most
    ds_at_cap: str = "fill"  # DS at the cap: mopps.loop.AT_CAP ("fill": top up with advantage-0 groups)
    # -- measurement --
    eval_every: int = 10  # steps between test / pool accuracy evaluations
    pool_eval_size: int = 2000  # pool accuracy is measured on the first this-many pool prompts (a uniform sample)
    influence_every: int = 5  # steps between self-influence measurements (two extra forward passes each)
    influence_reservoir: int = 256  # test prompts the rate-matched untrained probes are picked from
    influence_probe: int = 64  # untrained (test) prompts whose rate change is compared with the batch's
    seed: int = 0  # RL seed: candidate stream, rollouts, mini-batch order, selector (independent streams of it)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)

    def __post_init__(self) -> None:
        for name in ("train_pool_size", "test_size", "steps", "batch_size", "group_size", "minibatches",
                     "ts_ratio", "ds_max_gen_batches", "eval_every", "pool_eval_size", "influence_every",
                     "influence_reservoir"):
            check_integer(getattr(self, name), name, minimum=1)
        check_integer(self.seed, "seed")
        check_choice(self.ds_at_cap, "ds_at_cap", AT_CAP)
        if self.batch_size * self.ts_ratio > self.train_pool_size:
            raise ValueError(f"ts_ratio * batch_size = {self.ts_ratio * self.batch_size} exceeds "
                             f"train_pool_size = {self.train_pool_size}; candidates must be distinct prompts")


class Pool:
    """A fixed set of the task's ``problems`` (m, w) as tensors: ``prompts`` (m, P), ``answers``
    (m, L), ``mask`` (m, L)."""

    def __init__(self, task: Task, problems: np.ndarray) -> None:
        self.problems = problems
        self.prompts = torch.from_numpy(task.encode_prompts(problems))
        self.answers = torch.from_numpy(task.encode_answers(problems))
        self.mask = torch.from_numpy(task.answer_mask(problems))

    def __len__(self) -> int:
        return len(self.problems)

    def exact_rates(self, policy, ids: np.ndarray) -> np.ndarray:
        """Exact success probability of the prompts ``ids`` (m,) under ``policy``, float64 (m,)."""
        index = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        return exact_success_rate(policy, self.prompts[index], self.answers[index], self.mask[index]).numpy()


def make_pools(config: TestbedConfig) -> tuple[Task, Pool, Pool]:
    """The task, the training pool and the disjoint test set, fixed by ``pool_seed`` (plus the RL
    ``seed`` with ``pool_per_seed``, so an interval over seeds covers the draw of the pool too)."""
    task = config.warm_start.task
    rng = np.random.default_rng(config.pool_seed + (config.seed if config.pool_per_seed else 0))
    train = sample_unique(task, config.train_pool_size, rng)
    test = sample_unique(task, config.test_size, rng, exclude=train)
    return task, Pool(task, train), Pool(task, test)


def rollout(policy, task: Task, pool: Pool, ids: np.ndarray, group_size: int,
            generator: torch.Generator):
    """n completions per prompt: returns ``(completions (m*n, L), rewards float (m*n,))``, grouped by
    prompt (rows i*n .. i*n+n-1 belong to ids[i])."""
    repeated = np.repeat(np.asarray(ids, dtype=np.int64), group_size)
    completions = sample(policy, pool.prompts[repeated], task.answer_length, generator)
    rewards = task.verify(pool.problems[repeated], completions.numpy())
    return completions, rewards


def completion_mask(completions: torch.Tensor, eos: int) -> torch.Tensor:
    """float (m, L): 1 on generated tokens up to and including the first ``eos`` (what the loss sees)."""
    is_eos = (completions == eos).int()
    before_eos = (torch.cumsum(is_eos, dim=1) - is_eos) == 0
    return before_eos.float()


def grpo_update(policy, optimizer, config: TestbedConfig, eos: int, prompts: torch.Tensor, completions: torch.Tensor,
                rewards: np.ndarray, generator: torch.Generator, without_advantage: np.ndarray | None = None) -> None:
    """One GRPO step on G groups of n rollouts: ``prompts`` (G*n, P), ``completions`` (G*n, L),
    ``rewards`` float (G*n,) grouped by prompt; ``without_advantage``: bool (G,) or None, groups
    whose advantage is forced to 0 (dynamic sampling's fill groups)."""
    n = config.group_size
    grouped = torch.from_numpy(rewards).view(-1, n)
    # Group-normalised advantage (GRPO); zero-variance groups get 0 and only dilute the token mean.
    advantages = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + config.advantage_eps))
    if without_advantage is not None:
        advantages[torch.from_numpy(np.asarray(without_advantage, dtype=bool))] = 0.0
    advantages = advantages.reshape(-1, 1).float()
    mask = completion_mask(completions, eos)
    with torch.no_grad():
        old_logprobs = completion_logprobs(policy, prompts, completions)
    order = torch.randperm(len(prompts), generator=generator)
    for rows in order.chunk(config.minibatches):
        logprobs = completion_logprobs(policy, prompts[rows], completions[rows])
        ratio = torch.exp(logprobs - old_logprobs[rows])
        clipped = ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
        per_token = -torch.minimum(ratio * advantages[rows], clipped * advantages[rows])
        loss = (per_token * mask[rows]).sum() / mask[rows].sum()  # token-mean over the mini-batch
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        optimizer.step()


class InfluenceProbe:
    """Self-influence of one update: the change of the trained prompts' exact rates against untrained
    test prompts. ``influence_untrained`` compares with a fixed probe (the first ``influence_probe``
    test prompts, wherever their rates sit); ``influence_matched`` with, per trained prompt, the
    reservoir prompt nearest to it in exact rate before the update, so both sides start at the same p.
    The ``_logit`` keys give the same changes on the logit scale."""

    def __init__(self, config: TestbedConfig, train_pool: Pool, test_pool: Pool) -> None:
        self.train_pool, self.test_pool = train_pool, test_pool
        self.reservoir = np.arange(min(max(config.influence_reservoir, config.influence_probe), len(test_pool)))
        self.probe_size = min(config.influence_probe, len(test_pool))

    def before(self, policy, chosen: np.ndarray) -> None:
        """Measure the rates before the update of the batch ``chosen`` (pool ids (k,))."""
        self.chosen = chosen
        self.trained = self.train_pool.exact_rates(policy, chosen)
        self.untrained = self.test_pool.exact_rates(policy, self.reservoir)
        self.matched = nearest_by_rate(self.trained, self.untrained)

    def after(self, policy) -> dict[str, float]:
        """The changes since ``before``: mean over the batch and over each probe."""
        trained = self.train_pool.exact_rates(policy, self.chosen)
        untrained = self.test_pool.exact_rates(policy, self.reservoir)
        change, logit_change = untrained - self.untrained, logit(untrained) - logit(self.untrained)
        return {
            "influence_trained": float((trained - self.trained).mean()),
            "influence_untrained": float(change[:self.probe_size].mean()),
            "influence_matched": float(change[self.matched].mean()),
            "influence_logit_trained": float((logit(trained) - logit(self.trained)).mean()),
            "influence_logit_matched": float(logit_change[self.matched].mean()),
        }


INFLUENCE_KEYS = ("influence_trained", "influence_untrained", "influence_matched", "influence_logit_trained",
                  "influence_logit_matched")


RATE_BINS = 10  # equal-width bins of the exact rate for the selection diagnostics
PHASES = 4  # the run split into this many equal spans of steps for the same diagnostics


def run(config: TestbedConfig, method_name: str, on_step: Callable[[int], None] | None = None,
        evidence_log: Path | None = None) -> dict:
    """Train from the warm start with the selector ``method_name``; return the measured curves.

    Returns ``{"evals": [row, ...], "steps": [row, ...], "visits": int array (pool,), "calibration":
    float array (bins, 3)}`` where an eval row holds step, rollouts, test_accuracy, pool_accuracy,
    pool_zero_variance (the expected zero-variance share of a group from the pool sample's exact
    rates), wall_time; a step row holds the batch's size, zero-variance share, the prediction's
    scores against the exact rates over the candidates (``*_candidates``) and over the chosen batch
    (``spearman_selected``, range-restricted), and self-influence (``InfluenceProbe``).
    ``calibration`` sums ``calibration_counts`` over every step's candidates.

    Selection diagnostics (how a selector differs from another beyond its prediction): per step,
    ``retrained_share`` (share of the trained batch trained before), ``revisit_gap`` (mean steps since
    those prompts were last trained), ``revisit_drift`` / ``revisit_change`` (mean absolute / signed
    change of their exact rate since they were last chosen), ``trained_exact_mean`` and
    ``trained_zero_variance`` (the trained batch's mean exact rate and its expected zero-variance
    share, p^n + (1 - p)^n, from exact rates); per run, ``trained_rate_hist`` and
    ``candidate_rate_hist``: int (PHASES, RATE_BINS), how many trained prompts and how many
    candidates had an exact rate in each bin, per quarter of the run (their ratio is the selection
    frequency as a function of the exact rate; DS runs have no candidate histogram).

    ``evidence_log``: a path; the run's evidence stream (``mopps.loop.EvidenceLog``: candidates,
    predictions, outcomes, the candidates' exact rates, the pool sample's exact rates at every
    evaluation) is written there (a file already there is replaced). DS rounds are logged without
    exact rates. ``on_step(step)`` is called after every step (progress bars).
    """
    task, train_pool, test_pool = make_pools(config)
    policy = load_warm_start(config.warm_start)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    method = build_method(method_name, config.seed, config.ts_ratio, config.ds_max_gen_batches,
                          lambda ids: train_pool.exact_rates(policy, ids), num_prompts=len(train_pool),
                          group_size=config.group_size)
    log = None
    if evidence_log is not None:
        Path(evidence_log).unlink(missing_ok=True)
        log = EvidenceLog(evidence_log, meta={"source": "testbed", "method": method_name, "seed": config.seed,
                                              "group_size": config.group_size, "batch_size": config.batch_size,
                                              "config": config_dict(config)})
    # Pool prompt i has id i; a rollout succeeds when its reward is 1 (an exact answer).
    loop = SelectionLoop(method.selector, np.arange(len(train_pool)), rule=SuccessRule("threshold", 1.0),
                         ts_ratio=method.candidates, seed=config.seed, evidence_log=log)
    if method.features is not None:
        # Computed once from the frozen warm start, before any RL update (what a user has).
        loop.add_features(np.arange(len(train_pool)), pool_features(method.features, task, train_pool, policy))
    refill = Refill(loop, method.max_num_gen_batches) if method.max_num_gen_batches else None
    allocation = Allocation(loop, method.allocation, config.group_size) if method.allocation is not None else None
    influence = InfluenceProbe(config, train_pool, test_pool)
    pool_sample = np.arange(min(config.pool_eval_size, len(train_pool)))
    B, n = config.batch_size, config.group_size

    evals, steps = [], []
    visits = np.zeros(len(train_pool), dtype=np.int64)  # rollout groups per pool prompt
    rollouts = 0
    calibration = calibration_counts(None, np.zeros(0))
    last_trained = np.full(len(train_pool), -1, dtype=np.int64)  # step each prompt was last trained
    rate_when_chosen = np.full(len(train_pool), np.nan)  # its exact rate when it was last chosen
    trained_hist = np.zeros((PHASES, RATE_BINS), dtype=np.int64)
    candidate_hist = np.zeros((PHASES, RATE_BINS), dtype=np.int64)
    start = time.perf_counter()

    def evaluate(step: int) -> None:
        pool_rates = train_pool.exact_rates(policy, pool_sample)
        evals.append({
            "step": step,
            "rollouts": rollouts,
            "test_accuracy": float(test_pool.exact_rates(policy, np.arange(len(test_pool))).mean()),
            "pool_accuracy": float(pool_rates.mean()),
            "pool_zero_variance": float(np.mean(pool_rates**n + (1.0 - pool_rates) ** n)),
            "wall_time": time.perf_counter() - start,
        })
        if log is not None:
            log.record_pool(step, pool_sample, pool_rates)

    evaluate(0)
    for step in range(1, config.steps + 1):
        row = {"step": step}
        if refill is not None:
            # DAPO dynamic sampling: generation batches of B until B informative groups or the cap.
            generated = {}

            def roll(batch):
                completions, rewards = rollout(policy, task, train_pool, batch.positions, n, generator)
                generated[batch.step] = (completions, rewards)
                return np.repeat(batch.ids, n), rewards

            result = refill.fill(B, roll)
            rollouts += result.rollouts
            for round_ in result.rounds:
                visits[round_.batch.positions] += 1
            # The trained batch: B groups by the loop's at-cap rule (``RefillResult.trained_groups``),
            # each its own round's rows p*n .. p*n+n-1; a group that only fills the batch gets advantage 0.
            trained = result.trained_groups(B, config.ds_at_cap)
            chosen = trained.positions
            group_rows = [(result.rounds[r].batch.step, np.arange(p * n, (p + 1) * n)) for r, p in trained.groups]
            completions = torch.cat([generated[at][0][rows] for at, rows in group_rows])
            rewards = np.concatenate([generated[at][1][rows] for at, rows in group_rows])
            without_advantage = ~trained.kept
            scores = prediction_scores(None, np.zeros(0))
            chosen_exact = train_pool.exact_rates(policy, chosen) if len(chosen) else np.zeros(0)
            row.update(spearman_selected=float("nan"), generation_batches=len(result.rounds))
        elif allocation is not None:
            # Rollout allocation: pilot / screening rounds, then the trained groups of n (pilot rows included).
            generated = []

            def roll_request(request):
                completions, rewards = rollout(policy, task, train_pool, request.positions,
                                               request.rollouts_per_prompt, generator)
                generated.append((completions, rewards))
                return rewards

            result = allocation.step(B, roll_request)
            rollouts += result.rollouts
            for round_ in result.rounds:
                visits[round_.request.positions] += 1
            if (result.group_sizes() != n).any():
                raise RuntimeError(f"the allocation trained groups of sizes {sorted(set(result.group_sizes().tolist()))}; "
                                   f"the testbed's GRPO takes groups of n = {n}")
            # (groups * n, 2): (round, row), group by group; a dropping rule may train fewer than B groups.
            members = np.concatenate(result.members) if result.members else np.zeros((0, 2), dtype=np.int64)
            flat = np.cumsum([0] + [len(round_rewards) for _, round_rewards in generated])[members[:, 0]] + members[:, 1]
            completions = torch.cat([round_completions for round_completions, _ in generated])[torch.from_numpy(flat)]
            rewards = np.concatenate([round_rewards for _, round_rewards in generated])[flat]
            chosen = result.positions
            without_advantage = None
            scores = prediction_scores(None, np.zeros(0))
            chosen_exact = train_pool.exact_rates(policy, chosen) if len(chosen) else np.zeros(0)
            metrics = result.metrics()
            row.update(spearman_selected=float("nan"), generation_batches=len(result.rounds),
                       pilot_rollouts=int(metrics["mopps/pilot_rollouts"]),
                       unused_rollouts=int(metrics["mopps/unused_rollouts"]),
                       step_rollouts=result.rollouts)
        else:
            batch = loop.next(B)
            without_advantage = None
            exact = train_pool.exact_rates(policy, batch.candidates)
            chosen = batch.positions
            completions, rewards = rollout(policy, task, train_pool, chosen, n, generator)
            loop.observe(np.repeat(batch.ids, n), rewards)
            # A pilot oracle's screening rollouts are paid for: they count on the rollout axis.
            rollouts += B * n + method.screening_rollouts * len(batch.candidates)
            visits[chosen] += 1
            chosen_exact = exact[batch.selection.index]
            phase = min((step - 1) * PHASES // config.steps, PHASES - 1)
            candidate_hist[phase] += np.bincount(_rate_bin(exact), minlength=RATE_BINS)
            if log is not None:
                log.record_exact(batch.step, batch.candidates, exact)
            predicted, index = batch.selection.predicted_rate, batch.selection.index
            scores = prediction_scores(predicted, exact)
            calibration += calibration_counts(predicted, exact)
            row.update(
                spearman_selected=spearman(predicted[index], exact[index]) if predicted is not None else float("nan"),
                generation_batches=1,
            )
        row.update({f"{name}_candidates": value for name, value in scores.items()})
        row.update(_revisit_diagnostics(step, chosen, chosen_exact, last_trained, rate_when_chosen, n))
        trained_hist[min((step - 1) * PHASES // config.steps, PHASES - 1)] += np.bincount(
            _rate_bin(chosen_exact), minlength=RATE_BINS)
        successes = rewards.reshape(-1, n).sum(1)
        row.update(trained_groups=len(chosen), rollouts=rollouts,
                   zero_variance_share=float(np.mean((successes == 0) | (successes == n))) if len(chosen) else float("nan"),
                   batch_success_rate=float(rewards.mean()) if len(rewards) else float("nan"))
        measure_influence = len(chosen) > 0 and step % config.influence_every == 0
        if measure_influence:
            influence.before(policy, chosen)
        if len(chosen):
            grpo_update(policy, optimizer, config, task.eos, train_pool.prompts[np.repeat(chosen, n)], completions,
                        rewards, generator, without_advantage)
        row.update(influence.after(policy) if measure_influence else dict.fromkeys(INFLUENCE_KEYS, float("nan")))
        steps.append(row)
        if step % config.eval_every == 0 or step == config.steps:
            evaluate(step)
        if on_step is not None:
            on_step(step)
    if log is not None:
        log.flush()
    return {"evals": evals, "steps": steps, "visits": visits, "calibration": calibration,
            "trained_rate_hist": trained_hist, "candidate_rate_hist": candidate_hist}


def _rate_bin(rates: np.ndarray) -> np.ndarray:
    """int64 (m,): the RATE_BINS equal-width bin of each exact rate in [0, 1]."""
    return np.clip((np.asarray(rates) * RATE_BINS).astype(np.int64), 0, RATE_BINS - 1)


def _revisit_diagnostics(step: int, chosen: np.ndarray, chosen_exact: np.ndarray, last_trained: np.ndarray,
                         rate_when_chosen: np.ndarray, group_size: int) -> dict[str, float]:
    """The step's retraining figures (``run``'s docstring) for the trained pool ids ``chosen`` (k,)
    with exact rates ``chosen_exact`` (k,); updates ``last_trained`` and ``rate_when_chosen`` in place."""
    nan = float("nan")
    if len(chosen) == 0:
        return dict.fromkeys(("retrained_share", "revisit_gap", "revisit_drift", "revisit_change",
                              "trained_exact_mean", "trained_zero_variance"), nan)
    seen = last_trained[chosen] >= 0
    change = chosen_exact[seen] - rate_when_chosen[chosen[seen]]
    figures = {
        "retrained_share": float(seen.mean()),
        "revisit_gap": float(np.mean(step - last_trained[chosen[seen]])) if seen.any() else nan,
        "revisit_drift": float(np.abs(change).mean()) if seen.any() else nan,
        "revisit_change": float(change.mean()) if seen.any() else nan,
        "trained_exact_mean": float(chosen_exact.mean()),
        "trained_zero_variance": float(np.mean(chosen_exact**group_size + (1.0 - chosen_exact) ** group_size)),
    }
    last_trained[chosen] = step
    rate_when_chosen[chosen] = chosen_exact
    return figures


def config_dict(config: TestbedConfig) -> dict:
    """The config as plain JSON-able data (for results files); the task appears as ``task_key``."""
    task = config.warm_start.task
    data = asdict(replace(config, warm_start=replace(config.warm_start, task=None)))
    data["warm_start"]["task"] = task_key(task)
    return data
