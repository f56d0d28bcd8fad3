"""MoPPS in verl's V1 trainer (verl >= 0.8; tested against 0.9.1): ``trainer.v1.trainer_mode=mopps``.

The trainer translates between verl and one ``mopps.SelectionLoop`` (which decides everything):

1. ``_next_train_batch(k)`` asks ``loop.next(k)`` for k dataset rows (chosen among
   ``round(ts_ratio * k)`` candidates of the loop's stream) and hands them to verl as its own
   dataloader would, each with a fresh ``uid``; DAPO refills (a few prompts at a time) go the same way.
2. ``ObservingReplayBuffer`` reads the reward (and verdict) of every rollout of a training group the
   moment the group finishes, before verl's replay buffer filters it (``algorithm.filter_groups``),
   evicts it or samples it; at the end of each step the trainer passes them, keyed by prompt, to
   ``loop.observe``, so dropped zero-variance groups still teach the selector and rollouts without a
   verdict (``has_verdict`` 0) are no evidence.
3. after the step's evidence, tells the loop of the step's optimiser steps (``loop.policy_updated``,
   the loop's ``clock="host"``): ``ppo_epochs`` x the actor's mini-batches of the trained batch;
4. ``loop.save`` writes the loop's state (selector, candidate stream, open predictions) into each
   ``global_step_N/`` checkpoint folder before verl marks it as the latest; ``loop.load`` resumes it.

With ``mopps.max_num_gen_batches`` > 0 the training batch is assembled by ``mopps.Refill`` instead of
verl's DAPO filter: generation batches of B prompts chosen by the loop, each rolled out to the end and
observed, until B groups with unequal successes are kept or the cap is hit (``_refill_sample``); what
is trained at the cap is ``mopps.dynamic_sampling_at_cap`` (``RefillResult.trained_groups``, as in TRL).

With ``mopps.rollout_allocation`` set (docs/allocation.md) the batch is assembled by
``mopps.loop.Allocation`` (``_allocation_sample``): each round's prompts go out with the round's
rollouts per row (verl's per-row ``__rollout_n__``), each under a fresh uid; a trained prompt's
pilot and commit uids are kept and its trajectories all carry its first uid, so verl's uid-grouped
advantage (GRPO, RLOO, ...) sees one group of ``mopps.rollout_allocation_group_size`` (default
``rollout.n``) per prompt; verl pads the batch to its data-parallel multiple itself.

verl looks trainers up in the Ray actor that runs ``TaskRunnerV1``, so this module must be imported
there: set ``+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=
mopps.integrations.verl.trainer.setup_worker`` (the recipes' ``mopps_trainer.yaml`` does).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter

import numpy as np
import torch
import transfer_queue as tq
from tensordict import TensorDict

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.rl_dataset import collate_fn
from verl.utils.fs import local_mkdir_safe

from mopps.integrations.verl.config import SCORE_KEY, VERDICT_KEY, MoPPSVerlConfig, verdict_mask
from mopps.loop import Allocation, Batch, Refill
from mopps.loop.allocation import build_rule, check_group_size
from mopps.selectors.base import Selector
from mopps.storage import load_state

logger = logging.getLogger(__name__)

TRAINER_NAME = "mopps"
LOOP_FILE = "mopps_loop.npz"
OLD_SELECTOR_FILE = "mopps_selector.npz"  # what checkpoints of mopps <= 0.1's trainer hold
TRAIN_PARTITION = "train"
ROLLOUT_N_KEY = "__rollout_n__"  # a row's own rollout count, read by verl's V1 agent loop
# Advantage estimators of verl 0.9.1 that group a batch by uid (ray_trainer.compute_advantage's index).
UID_GROUPED_ESTIMATORS = frozenset({"grpo", "grpo_vectorized", "gdpo", "grpo_passk", "reinforce_plus_plus_baseline",
                                    "rloo", "rloo_vectorized", "opo", "gpg", "optimal_token_baseline",
                                    "tir_optimal_token_baseline"})


def setup_worker() -> None:
    """Ray ``worker_process_setup_hook``: Ray imports this module in each worker process, and the
    import registers ``MoPPSTrainer`` with verl's trainer registry; nothing else is needed."""


def final_trajectory_keys(trajectory_keys, uids: set[str]) -> list[str]:
    """One trajectory per rollout session of the given groups.

    Keys are verl's ``{uid}_{session}_{output}``; a multi-output agent loop writes several outputs per
    session (all carrying the final reward), so only the last output of each session counts as a trial.
    """
    last: dict[tuple[str, str], tuple[int, str]] = {}
    for key in trajectory_keys:
        uid, session, output = key.rsplit("_", 2)
        if uid not in uids:
            continue
        best = last.get((uid, session))
        if best is None or int(output) > best[0]:
            last[(uid, session)] = (int(output), key)
    return sorted(key for _, key in last.values())


def session_grid(uids: list[str], trajectory_keys: list[str], rewards: np.ndarray, has_verdict: np.ndarray,
                 sessions: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rewards, has_verdict)`` flat (len(uids) * sessions,): row i * sessions + s is session s of
    group ``uids[i]`` (an allocation round's layout); ``trajectory_keys`` (t,) with their ``rewards``
    and ``has_verdict`` (from ``final_trajectory_keys`` / ``read_rewards``). A session that never
    finished is a rollout without a verdict."""
    grid_rewards = np.full(len(uids) * sessions, np.nan)
    grid_verdict = np.zeros(len(uids) * sessions, dtype=bool)
    row_of_uid = {uid: row for row, uid in enumerate(uids)}
    for key, reward, verdict in zip(trajectory_keys, rewards.tolist(), has_verdict.tolist(), strict=True):
        uid, session, _ = key.rsplit("_", 2)
        if int(session) < sessions:
            position = row_of_uid[uid] * sessions + int(session)
            grid_rewards[position], grid_verdict[position] = reward, verdict
    return grid_rewards, grid_verdict


def read_rewards(trajectory_keys: list[str], reward_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rewards float (t,), has_verdict bool (t,))`` of the trajectories: the judged value is
    ``reward_extra_info[reward_key]`` written by the reward function, or the summed ``rm_scores``
    when ``reward_key == "score"``; the verdict is ``reward_extra_info["has_verdict"]`` (True when the
    reward function does not write it)."""
    if not trajectory_keys:
        return np.zeros(0), np.zeros(0, dtype=bool)
    fields = ["extra_fields"] + (["rm_scores"] if reward_key == SCORE_KEY else [])
    data = tq.kv_batch_get(keys=trajectory_keys, partition_id=TRAIN_PARTITION, select_fields=fields)
    rewards, verdicts = [], []
    for position, (key, value) in enumerate(zip(trajectory_keys, list(data["extra_fields"]), strict=True)):
        extra_fields = getattr(value, "data", value)
        info = extra_fields.get("reward_extra_info", {}) if isinstance(extra_fields, dict) else {}
        verdicts.append(info.get(VERDICT_KEY, 1.0))
        if reward_key == SCORE_KEY:
            rewards.append(float(data["rm_scores"][position].sum().item()))
        elif reward_key in info:
            rewards.append(float(info[reward_key]))
        else:
            raise ValueError(
                f"trajectory {key}: reward_extra_info has no {reward_key!r} (it has {sorted(info)}); "
                "set mopps.reward_key to one of those, or to 'score' for the summed token-level score"
            )
    return np.asarray(rewards, dtype=np.float64), verdict_mask(verdicts)


def require_rewards_before_sampling(config) -> None:
    """Refuse a colocated reward model (``reward.reward_model.enable`` without ``enable_resource_pool``).

    The selector reads each group's rewards when the group finishes, before the replay buffer samples
    it; a colocated reward model scores rollouts only after sampling (``PPOTrainer._step_once``), so
    the rewards would not exist yet. verl's own DAPO filter refuses this setup for the same reason.
    """
    reward_model = (config.get("reward") or {}).get("reward_model") or {}
    if reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
        raise ValueError(
            "reward.reward_model.enable = True with reward.reward_model.enable_resource_pool = False: a colocated "
            "reward model scores rollouts only after verl's replay buffer has sampled them, so MoPPS would have no "
            "reward to learn from; set reward.reward_model.enable_resource_pool=True or use a rule-based reward"
        )


class ObservingReplayBuffer(ReplayBuffer):
    """verl's synchronous ``ReplayBuffer`` that reports each finished training group's rewards once,
    right after it reads the queue's metadata and before it evicts (DAPO filter), samples or discards
    any group. ``on_finished(groups, uids (t,), rewards (t,), has_verdict (t,))`` receives the set of
    groups (uids) that finished and one entry per rollout session of theirs (a failed group may have
    none). With ``fill`` (``fill(buffer, batch_size) -> (KVBatchMeta, metrics)``) the training batch
    is assembled by it instead, and nothing is reported (``fill`` observes its own rollouts). Built
    with ``adopt`` from the buffer verl made."""

    @classmethod
    def adopt(cls, buffer: ReplayBuffer, on_finished, reward_key: str, fill=None) -> "ObservingReplayBuffer":
        """Wrap a buffer verl has already built: verl passes mode-dependent DAPO arguments
        (``filter_groups_metric``, refill sizes) that this adapter should not re-derive."""
        if type(buffer) is not ReplayBuffer:
            raise ValueError(f"the MoPPS trainer observes verl's sync ReplayBuffer, got {type(buffer).__name__}")
        observing = cls.__new__(cls)
        observing.__dict__.update(buffer.__dict__)
        observing._on_finished = on_finished
        observing._reward_key = reward_key
        observing._fill = fill
        observing._reported = set()
        return observing

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if self._fill is None or partition_id != TRAIN_PARTITION:
            return super().sample(global_steps, partition_id, batch_size)
        return self._fill(self, batch_size)

    def wait_for(self, groups: set[str]) -> None:
        """Poll the queue until every one of ``groups`` (uids) has finished or failed."""
        while True:
            self._sync_metadata_from_transfer_queue()
            if groups <= self.finished_keys[TRAIN_PARTITION] | self.failure_keys[TRAIN_PARTITION]:
                return
            time.sleep(self.poll_interval)

    def _sync_metadata_from_transfer_queue(self) -> None:
        super()._sync_metadata_from_transfer_queue()
        if self._fill is not None:
            return
        terminal = self.finished_keys[TRAIN_PARTITION] | self.failure_keys[TRAIN_PARTITION]
        self._reported &= terminal  # a cleared group never comes back, so forget it
        fresh = terminal - self._reported
        if not fresh:
            return
        keys = final_trajectory_keys(self.partitions[TRAIN_PARTITION], fresh)
        self._on_finished(fresh, [key.split("_", 1)[0] for key in keys], *read_rewards(keys, self._reward_key))
        self._reported |= fresh


@register_trainer(TRAINER_NAME)
class MoPPSTrainer(PPOTrainerSync):
    """verl's synchronous V1 trainer with a ``mopps.SelectionLoop`` choosing each step's prompts.

    ``config``: verl's config with the ``mopps.*`` block; ``selector``: optionally a ready
    ``mopps.Selector`` to use instead of the one ``mopps.*`` describes (then ``mopps.selector_class``
    must be unset and the ``bandit_*`` MoPPS fields at their defaults).
    """

    def __init__(self, config, selector: Selector | None = None) -> None:
        self.mopps_config = MoPPSVerlConfig.from_mapping(config.get("mopps"))
        require_rewards_before_sampling(config)
        self.selector = self.mopps_config.checked_selector(selector)  # the loop's, once built
        self.loop = None  # built with the dataset (_init_dataloader)
        self.refill = None  # mopps.Refill over the loop when mopps.max_num_gen_batches > 0
        self.allocation = None  # mopps.loop.Allocation over the loop when mopps.rollout_allocation is set
        self._prompt_of_uid: dict[str, str] = {}  # uid -> prompt key of every group not yet read back
        self._filler_uids: set[str] = set()  # groups of the sampled batch that only fill it at the cap
        self._finished: list[tuple[list[str], np.ndarray, np.ndarray]] = []  # rollouts read, not yet observed
        self._selected = Counter()  # mopps/candidates and mopps/selected of this step
        self._optimizer_steps = 0  # actor optimiser steps of this step, told to the loop after its evidence
        super().__init__(config)

    # verl branches on ``trainer_mode == "sync"`` (replay buffer, dataloader granularity, queue
    # checkpoints); this trainer runs that schedule whatever name it is registered under.
    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, registered_name: str) -> None:
        self.registered_mode = registered_name

    def _build_replay_buffer(self) -> ReplayBuffer:
        sampler_config = self.config.trainer.v1.sampler
        if sampler_config.get("custom_sampler") and sampler_config.custom_sampler.get("path"):
            raise ValueError(
                "trainer.v1.sampler.custom_sampler is set; the MoPPS trainer needs verl's own replay buffer "
                "to see rewards before filtering"
            )
        fill = None
        filter_groups = self.config.algorithm.get("filter_groups") or {}
        if self.mopps_config.rollout_allocation:
            if filter_groups.get("enable", False):
                raise ValueError(
                    f"mopps.rollout_allocation = {self.mopps_config.rollout_allocation!r} assembles the batch itself "
                    "(mopps.loop.Allocation); set algorithm.filter_groups.enable=False, or mopps.rollout_allocation=null "
                    "to keep verl's DAPO filter")
            fill = self._allocation_sample
        if self.mopps_config.max_num_gen_batches:
            if filter_groups.get("enable", False):
                raise ValueError(
                    f"mopps.max_num_gen_batches = {self.mopps_config.max_num_gen_batches} runs dynamic sampling "
                    "itself (mopps.Refill); set algorithm.filter_groups.enable=False, or mopps.max_num_gen_batches=0 "
                    "to keep verl's DAPO filter"
                )
            if self.mopps_config.dynamic_sampling_at_cap == "repeat":
                raise ValueError(
                    "mopps.dynamic_sampling_at_cap = 'repeat': verl's replay buffer holds each group once (its "
                    "trajectories are keyed by uid), so the verl trainer cannot train a group twice; use 'fill' or "
                    "'raise'")
            fill = self._refill_sample
        return ObservingReplayBuffer.adopt(super()._build_replay_buffer(), on_finished=self._rollouts_finished,
                                           reward_key=self.mopps_config.reward_key, fill=fill)

    def _init_dataloader(self) -> None:
        super()._init_dataloader()  # verl's dataset (filtered, sub-sampled); its train dataloader stays unused
        # Before verl's _load_checkpoint, so that a resumed run's own loop state wins over the prior file.
        self.loop = self.mopps_config.build_loop(self.train_dataset, self.selector, clock="host",
                                                 group_size=int(self.config.actor_rollout_ref.rollout.n))
        if self.mopps_config.max_num_gen_batches:
            self.refill = Refill(self.loop, self.mopps_config.max_num_gen_batches)
        if self.mopps_config.rollout_allocation:
            self.allocation = self._build_allocation()
        logger.info("MoPPS: %d training prompts keyed by data_source/extra_info.index", len(self.loop))

    # -- selection, before rollout ---------------------------------------------------------------

    def _next_train_batch(self, num_prompts: int | None = None) -> TensorDict:
        """The ``num_prompts`` rows the loop chooses, as verl's dataloader would hand them over."""
        batch = self.loop.next(num_prompts or self.config.data.train_batch_size)
        self._selected.update(batch.metrics())
        return self._rows_of(batch)

    def prepare_step(self) -> dict:
        # With Refill or an allocation, sampling submits each round itself (_refill_sample, _allocation_sample).
        return {} if self.refill is not None or self.allocation is not None else super().prepare_step()

    def _build_allocation(self) -> Allocation:
        """``Allocation`` over the loop with the rule ``mopps.rollout_allocation`` and groups of
        ``mopps.rollout_allocation_group_size`` (default ``rollout.n``). verl's replay buffer trains
        whole uids, so a rule that trains a subset of a prompt's rollouts (Reinforce-Ada's down-sampling)
        is refused, as is an advantage estimator that does not group by uid."""
        name = self.mopps_config.rollout_allocation
        if name == "reinforce_ada":
            raise ValueError("mopps.rollout_allocation = 'reinforce_ada' down-samples each group to a subset of its "
                             "rollouts; verl's replay buffer trains whole uids, so use mopps_pilot, pilot_commit or "
                             "speed_rl here (Reinforce-Ada runs in TRL and the testbed)")
        estimator = str(self.config.algorithm.adv_estimator)
        if estimator not in UID_GROUPED_ESTIMATORS:
            raise ValueError(f"mopps.rollout_allocation = {name!r} merges a prompt's pilot and commit uids into one "
                             f"group, which only an advantage estimator that groups by uid uses; algorithm.adv_estimator "
                             f"= {estimator!r} (use one of {sorted(UID_GROUPED_ESTIMATORS)})")
        rule = build_rule(name)
        group_size = self.mopps_config.rollout_allocation_group_size or int(self.config.actor_rollout_ref.rollout.n)
        try:
            group_size = check_group_size(rule, group_size, 1)
        except ValueError as error:
            raise ValueError(f"mopps.{error}") from None
        return Allocation(self.loop, rule, group_size)

    def _rows_of(self, batch: Batch) -> TensorDict:
        """The dataset rows of a loop ``batch`` as verl's dataloader hands them over, each with a fresh uid."""
        return self._rows_at(batch.positions, batch.ids)

    def _rows_at(self, positions: np.ndarray, ids, rollout_n: int | None = None) -> TensorDict:
        """Dataset rows ``positions`` (their prompt ``ids``) as verl's dataloader hands them over, each
        with a fresh uid; ``rollout_n``: rollouts per row instead of ``rollout.n`` (verl's per-row
        ``__rollout_n__``)."""
        rows = collate_fn([self.train_dataset[int(position)] for position in positions])
        uids = [str(uuid.uuid4()) for _ in range(len(positions))]  # as verl's _fetch_one_gen_batch
        rows["uid"] = np.array(uids, dtype=object)
        if rollout_n is not None:
            rows[ROLLOUT_N_KEY] = np.full(len(positions), rollout_n, dtype=np.int64)
        self._prompt_of_uid.update(zip(uids, ids))
        chosen = tu.get_tensordict(rows)
        tu.assign_non_tensor_data(chosen, "global_steps", self.global_steps)
        return chosen

    # -- evidence, before any filter -------------------------------------------------------------

    def _rollouts_finished(self, groups: set[str], uids: list[str], rewards: np.ndarray,
                           has_verdict: np.ndarray) -> None:
        """Keep one reward per finished rollout session (``uids``, ``rewards``, ``has_verdict`` (t,)) of
        the finished ``groups``, keyed by its group's prompt, for ``observe_finished``."""
        self._finished.append(self._rollout_records(groups, uids, rewards, has_verdict))

    def _rollout_records(self, groups: set[str], uids: list[str], rewards: np.ndarray,
                         has_verdict: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(prompt keys, rewards, has_verdict)`` per rollout session of the finished ``groups``, as
        ``loop.observe`` takes them; the groups' uids are forgotten. A group that failed without any
        session result is one rollout without a verdict (it closes the prediction)."""
        unknown = sorted(groups - self._prompt_of_uid.keys())
        if unknown:
            raise ValueError(f"uid {unknown[0]!r} has no prompt key; every rolled-out uid must come from a selection")
        empty = sorted(groups - set(uids))
        prompts = [self._prompt_of_uid[uid] for uid in [*uids, *empty]]
        for uid in groups:
            del self._prompt_of_uid[uid]
        rewards = np.concatenate([rewards, np.full(len(empty), np.nan)])
        has_verdict = np.concatenate([has_verdict, np.zeros(len(empty), dtype=bool)])
        return prompts, rewards, has_verdict

    def _refill_sample(self, buffer: ObservingReplayBuffer, batch_size: int):
        """verl's training batch from ``mopps.Refill``: generation batches of ``batch_size`` prompts the
        loop chooses, each submitted, waited for and observed, until ``batch_size`` informative groups
        are kept or ``mopps.max_num_gen_batches`` batches were generated. The batch holds the groups
        ``RefillResult.trained_groups`` names for ``mopps.dynamic_sampling_at_cap`` (groups that only
        fill it get advantage 0: ``_compute_advantage``); the other groups are cleared from the queue.
        Returns ``(KVBatchMeta, metrics)``: the refill's one set of metrics (``RefillResult.metrics``,
        ``TrainedGroups.metrics``, ``mopps/trained_rollouts``)."""
        uids_of_round: list[list[str]] = []

        def roll_out(batch: Batch):
            rows = self._rows_of(batch)
            self._submit_batch_to_rollout(rows)
            uids_of_round.append(list(rows["uid"]))
            groups = set(uids_of_round[-1])
            buffer.wait_for(groups)
            keys = final_trajectory_keys(buffer.partitions[TRAIN_PARTITION], groups)
            return self._rollout_records(groups, [key.split("_", 1)[0] for key in keys],
                                         *read_rewards(keys, self.mopps_config.reward_key))

        result = self.refill.fill(batch_size, roll_out, batch_size=batch_size)
        buffer._sync_metadata_from_transfer_queue()
        generated = {uid for uids in uids_of_round for uid in uids}
        try:
            trained_groups = result.trained_groups(batch_size, self.mopps_config.dynamic_sampling_at_cap)
        except RuntimeError:
            buffer._clear_groups(TRAIN_PARTITION, generated)  # at_cap 'raise': the run stops, nothing is trained
            raise
        trained = [uids_of_round[r][p] for r, p in trained_groups.groups.tolist()]
        self._filler_uids = {uid for uid, kept in zip(trained, trained_groups.kept) if not kept}
        buffer._clear_groups(TRAIN_PARTITION, generated - set(trained))
        batch = buffer._materialize_batch(TRAIN_PARTITION, trained, dict(buffer.partitions[TRAIN_PARTITION]))
        return batch, {**result.metrics(), **trained_groups.metrics(), "mopps/trained_rollouts": float(len(batch.keys))}

    def _allocation_sample(self, buffer: ObservingReplayBuffer, batch_size: int):
        """verl's training batch from ``mopps.loop.Allocation``: each round's prompts submitted with the
        round's rollouts per row (``__rollout_n__``), waited for and observed; the trained prompts' uids
        (pilot and commit) are kept and the rest cleared, and every trajectory of a trained prompt gets
        its first uid, so verl's uid-grouped advantage sees one group of ``group_size`` per prompt.
        verl pads the batch to its data-parallel multiple itself (``_balance_batch``). Returns
        ``(KVBatchMeta, metrics)``: ``AllocationResult.metrics`` and ``mopps/trained_rollouts``."""
        uids_of_round: list[list[str]] = []

        def roll_out(request):
            rows = self._rows_at(request.positions, request.ids, request.rollouts_per_prompt)
            self._submit_batch_to_rollout(rows)
            uids = list(rows["uid"])
            uids_of_round.append(uids)
            groups = set(uids)
            buffer.wait_for(groups)
            keys = final_trajectory_keys(buffer.partitions[TRAIN_PARTITION], groups)
            for uid in groups:
                del self._prompt_of_uid[uid]
            return session_grid(uids, keys, *read_rewards(keys, self.mopps_config.reward_key),
                                request.rollouts_per_prompt)

        result = self.allocation.step(batch_size, roll_out)
        buffer._sync_metadata_from_transfer_queue()
        generated = {uid for uids in uids_of_round for uid in uids}
        # A prompt's uids in its group, in order: one per round it was rolled out in.
        group_uids = [list(dict.fromkeys(uids_of_round[r][row // result.rounds[r].request.rollouts_per_prompt]
                                         for r, row in member.tolist())) for member in result.members]
        trained = [uid for uids in group_uids for uid in uids]
        buffer._clear_groups(TRAIN_PARTITION, generated - set(trained))
        batch = buffer._materialize_batch(TRAIN_PARTITION, trained, dict(buffer.partitions[TRAIN_PARTITION]))
        group_of = {uid: uids[0] for uids in group_uids for uid in uids}
        merged = tu.list_of_dict_to_tensordict([{"uid": group_of[key.split("_", 1)[0]]} for key in batch.keys])
        tq.kv_batch_put(keys=batch.keys, partition_id=TRAIN_PARTITION, fields=merged)
        return batch, {**result.metrics(), "mopps/trained_rollouts": float(len(batch.keys))}

    def _compute_advantage(self, batch, metrics: dict):
        # A group that only fills the batch at the cap teaches nothing, whatever a shaped score beside the
        # judged value says (as in TRL): its trajectories' advantages are set to 0 after verl computed them.
        batch = super()._compute_advantage(batch, metrics)
        filler = [key for key in batch.keys if key.split("_", 1)[0] in self._filler_uids]
        self._filler_uids = set()
        if filler:
            advantages = tq.kv_batch_get(keys=filler, partition_id=batch.partition_id,
                                         select_fields=["advantages"])["advantages"]
            zeros = TensorDict({"advantages": torch.zeros_like(advantages)}, batch_size=len(filler))
            tq.kv_batch_put(keys=filler, partition_id=batch.partition_id, fields=zeros)
        return batch

    def observe_finished(self) -> dict[str, float]:
        """Teach the loop every rollout read since the last call (one ``loop.observe``) and return the
        step's ``mopps/*`` metrics (those of ``observe`` and of the step's selections)."""
        metrics = {name: float(count) for name, count in self._selected.items()}
        self._selected.clear()
        if self._finished:
            prompts = [prompt for group in self._finished for prompt in group[0]]
            rewards = np.concatenate([group[1] for group in self._finished])
            has_verdict = np.concatenate([group[2] for group in self._finished])
            self._finished = []
            metrics.update(self.loop.observe(prompts, rewards, has_verdict=has_verdict))
        if hasattr(self.loop.selector, "__len__"):
            metrics["mopps/posterior_size"] = float(len(self.loop.selector))
        return metrics

    def step(self, metrics: dict, timing_raw: dict):
        # Once per step, after verl sampled its batch (so every group of the step, kept or filtered,
        # has been read) and before the checkpoint and the next step's selection. The evidence came
        # from the policy before this step's update, so it is observed before the ticks.
        batch = super().step(metrics, timing_raw)
        metrics.update(self.observe_finished())
        if self._optimizer_steps:
            self.loop.policy_updated(self._optimizer_steps)
            self._optimizer_steps = 0
        return batch

    def _update_actor(self, batch, metrics: dict):
        # verl's actor takes ppo_epochs passes over the batch in mini-batches of ppo_mini_batch_size
        # prompts (x rollout.n rollouts), one optimiser step each.
        actor = self.config.actor_rollout_ref
        mini_batch = actor.actor.ppo_mini_batch_size * actor.rollout.n
        self._optimizer_steps += int(actor.actor.ppo_epochs) * max(1, -(-len(batch.keys) // mini_batch))
        return super()._update_actor(batch, metrics)

    # -- checkpoints -----------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        # Written first: verl's own save ends by marking the folder as the latest checkpoint.
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        local_mkdir_safe(folder)
        if self.loop.evidence_log is not None:
            # The log first: a crash between the two leaves rows a resume truncates, never a gap.
            self.loop.evidence_log.flush()
        self.loop.save(os.path.join(folder, LOOP_FILE))
        super()._save_checkpoint()

    def fit(self, *args, **kwargs):
        """verl's ``fit``; the evidence log (if set) is written when it ends, normally or not."""
        try:
            return super().fit(*args, **kwargs)
        finally:
            if self.loop is not None and self.loop.evidence_log is not None:
                self.loop.evidence_log.flush()

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()
        folder = self._resumed_folder()
        if folder is None:
            return
        path = os.path.join(folder, LOOP_FILE)
        old_path = os.path.join(folder, OLD_SELECTOR_FILE)
        if os.path.exists(path):
            self.loop.load(path)
            logger.info("MoPPS: selection loop restored from %s (step %d)", path, self.loop.step)
        elif os.path.exists(old_path):
            # A checkpoint of mopps <= 0.1 holds the selector alone; its candidate order came from verl's
            # dataloader and cannot be continued, so the posterior carries over and the order starts anew.
            self.loop.selector.load_state_dict(load_state(old_path))
            logger.warning("MoPPS: %s is an older checkpoint holding only the selector; its state is restored, "
                           "the candidate order starts a new pass", old_path)
        else:
            raise FileNotFoundError(
                f"resuming from {folder}, which has no {LOOP_FILE}: it was not written by the MoPPS "
                "trainer; start a fresh run or copy the selection loop state there"
            )

    def _resumed_folder(self) -> str | None:
        """The checkpoint folder verl resumed from, or None when it started fresh."""
        if self.global_steps == 0:
            return None
        trainer = self.config.trainer
        if trainer.resume_mode == "resume_path":
            folder = trainer.resume_from_path
        else:
            folder = os.path.join(trainer.default_local_dir, f"global_step_{self.global_steps}")
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)
