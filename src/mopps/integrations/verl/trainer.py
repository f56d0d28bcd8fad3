"""MoPPS in verl's V1 trainer (verl >= 0.8; tested against 0.9.1): ``trainer.v1.trainer_mode=mopps``.

Per step, on top of verl's synchronous trainer (``PPOTrainerSync``):

1. ``_next_train_batch(B)`` fetches ``ts_ratio * B`` candidate prompts from verl's dataloader, keys
   them ``data_source/extra_info.index``, and the selector keeps B before anything is rolled out
   (DAPO refills, which ask for a few prompts at a time, go through the same path).
2. ``ObservingReplayBuffer`` reads the rewards of every training group the moment it finishes, before
   verl's replay buffer filters it (``algorithm.filter_groups``), evicts it or samples it, groups them
   by ``uid`` and updates the posterior; so dropped zero-variance groups still teach the selector.
3. The selector state is written into each ``global_step_N/`` checkpoint folder (before verl marks
   the checkpoint as the latest) and read back on resume; its metrics go to verl's tracking under
   ``mopps/``.

verl looks trainers up in the Ray actor that runs ``TaskRunnerV1``, so this module must be imported
there: set ``+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=
mopps.integrations.verl.trainer.setup_worker`` (the recipes' ``mopps_trainer.yaml`` does).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import transfer_queue as tq
from tensordict import TensorDict

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.fs import local_mkdir_safe

from mopps.integrations.verl.config import MoPPSVerlConfig
from mopps.integrations.verl.evidence import group_evidence
from mopps.integrations.verl.keys import dataset_keys, keys_of_rows
from mopps.integrations.verl.ledger import SelectionLedger
from mopps.storage import load_state

logger = logging.getLogger(__name__)

TRAINER_NAME = "mopps"
SELECTOR_FILE = "mopps_selector.npz"
TRAIN_PARTITION = "train"
SCORE_KEY = "score"


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


def read_rewards(trajectory_keys: list[str], reward_key: str) -> np.ndarray:
    """The judged value of each trajectory, float (t,): ``reward_extra_info[reward_key]`` written by the
    reward function, or the summed ``rm_scores`` when ``reward_key == "score"``."""
    if not trajectory_keys:
        return np.zeros(0)
    field = "rm_scores" if reward_key == SCORE_KEY else "extra_fields"
    data = tq.kv_batch_get(keys=trajectory_keys, partition_id=TRAIN_PARTITION, select_fields=[field])
    values = []
    for key, value in zip(trajectory_keys, list(data[field]), strict=True):
        if reward_key == SCORE_KEY:
            values.append(float(value.sum().item()))
            continue
        extra_fields = getattr(value, "data", value)
        info = extra_fields.get("reward_extra_info", {}) if isinstance(extra_fields, dict) else {}
        if reward_key not in info:
            raise ValueError(
                f"trajectory {key}: reward_extra_info has no {reward_key!r} (it has {sorted(info)}); "
                "set mopps.reward_key to one of those, or to 'score' for the summed token-level score"
            )
        values.append(float(info[reward_key]))
    return np.asarray(values, dtype=np.float64)


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
    any group. ``on_finished(uids (t,), rewards (t,))`` receives one entry per rollout session.
    Built with ``adopt`` from the buffer verl made."""

    @classmethod
    def adopt(cls, buffer: ReplayBuffer, on_finished, reward_key: str) -> "ObservingReplayBuffer":
        """Wrap a buffer verl has already built: verl passes mode-dependent DAPO arguments
        (``filter_groups_metric``, refill sizes) that this adapter should not re-derive."""
        if type(buffer) is not ReplayBuffer:
            raise ValueError(f"the MoPPS trainer observes verl's sync ReplayBuffer, got {type(buffer).__name__}")
        observing = cls.__new__(cls)
        observing.__dict__.update(buffer.__dict__)
        observing._on_finished = on_finished
        observing._reward_key = reward_key
        observing._reported = set()
        return observing

    def _sync_metadata_from_transfer_queue(self) -> None:
        super()._sync_metadata_from_transfer_queue()
        terminal = self.finished_keys[TRAIN_PARTITION] | self.failure_keys[TRAIN_PARTITION]
        self._reported &= terminal  # a cleared group never comes back, so forget it
        fresh = terminal - self._reported
        if not fresh:
            return
        keys = final_trajectory_keys(self.partitions[TRAIN_PARTITION], fresh)
        rewards = read_rewards(keys, self._reward_key)
        self._on_finished([key.split("_", 1)[0] for key in keys], rewards)
        self._reported |= fresh


@register_trainer(TRAINER_NAME)
class MoPPSTrainer(PPOTrainerSync):
    """verl's synchronous V1 trainer with MoPPS choosing each step's prompts (config: ``mopps.*``)."""

    def __init__(self, config) -> None:
        self.mopps_config = MoPPSVerlConfig.from_mapping(config.get("mopps"))
        require_rewards_before_sampling(config)
        self.selector = self.mopps_config.build_selector()
        self.ledger = SelectionLedger()
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
        return ObservingReplayBuffer.adopt(
            super()._build_replay_buffer(), on_finished=self.observe_rollouts, reward_key=self.mopps_config.reward_key
        )

    def _init_dataloader(self) -> None:
        super()._init_dataloader()
        keys = dataset_keys(self.train_dataset)  # refuses missing or repeated extra_info.index
        # Before verl's _load_checkpoint, so that a resumed run's own selector state wins.
        self.mopps_config.apply_prior_file(self.selector, keys, "data_source/extra_info.index of the training set")
        logger.info("MoPPS: %d training prompts keyed by data_source/extra_info.index", len(keys))

    # -- selection, before rollout ---------------------------------------------------------------

    def _next_train_batch(self, num_prompts: int | None = None) -> TensorDict:
        """Fetch ``ts_ratio * num_prompts`` candidates and keep the ``num_prompts`` MoPPS selects."""
        num_prompts = num_prompts or self.config.data.train_batch_size
        candidates = super()._next_train_batch(self.mopps_config.num_candidates(num_prompts))
        keys = keys_of_rows(list(candidates["data_source"]), list(candidates["extra_info"]))
        # Candidates that straddle an epoch boundary can repeat a prompt; offer each prompt once.
        unique_keys, first_rows = np.unique(np.asarray(keys, dtype=object).astype(str), return_index=True)
        if len(unique_keys) < num_prompts:
            raise ValueError(
                f"only {len(unique_keys)} distinct prompts among {len(keys)} candidates for {num_prompts} "
                f"slots; lower mopps.ts_ratio ({self.mopps_config.ts_ratio}) or data.train_batch_size"
            )
        order = np.sort(first_rows)
        candidate_keys = [keys[row] for row in order]
        choice = self.selector.select(candidate_keys, num_prompts)
        rows = order[choice.index]
        chosen = tu.index_select_tensor_dict(candidates, rows.tolist())
        self.ledger.record(
            handles=list(chosen["uid"]),
            keys=[candidate_keys[i] for i in choice.index],
            scores=choice.scores[choice.index],
            predicted=choice.predicted_rate[choice.index],
            candidates=len(candidate_keys),
        )
        return chosen

    # -- evidence, before any filter -------------------------------------------------------------

    def observe_rollouts(self, uids: list[str], rewards: np.ndarray) -> None:
        """Update the posterior from one reward per rollout session (``uids`` (t,), ``rewards`` (t,))."""
        if not uids:
            return
        evidence = group_evidence(uids, rewards, self.mopps_config.build_success_rule(), self.ledger.keys_of())
        if not self.mopps_config.bandit_no_update:
            self.selector.update(evidence.keys, evidence.successes, evidence.trials)
        self.ledger.settle(evidence.uids, evidence.successes, evidence.trials)

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch) -> None:
        super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        metrics.update(self.ledger.pop_metrics())
        metrics["mopps/posterior_size"] = float(len(self.selector))

    # -- checkpoints -----------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        # Written first: verl's own save ends by marking the folder as the latest checkpoint.
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        local_mkdir_safe(folder)
        self.selector.save(os.path.join(folder, SELECTOR_FILE))
        super()._save_checkpoint()

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()
        folder = self._resumed_folder()
        if folder is None:
            return
        path = os.path.join(folder, SELECTOR_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"resuming from {folder}, which has no {SELECTOR_FILE}: it was not written by the MoPPS "
                "trainer; start a fresh run or copy the selector state there"
            )
        self.selector.load_state_dict(load_state(path))
        logger.info("MoPPS: selector state restored from %s (%d prompts)", path, len(self.selector))

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
