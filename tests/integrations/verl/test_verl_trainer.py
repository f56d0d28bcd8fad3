"""The V1 trainer (verl 0.9.1) on CPU: selection before rollout, learning before the DAPO filter,
grouping by uid, refusing bad indices, checkpoint round trip, registration.

The trainer object is verl's real one (``MoPPSTrainer(config)``), with its real dataloader,
replay buffer and checkpoint code; worker groups (GPU), the rollout engine and the TransferQueue
service are replaced (see conftest). ``fit`` itself is not run: it needs the GPU workers.
"""

from __future__ import annotations

import numpy as np
import pytest
from _verl_helpers import ScriptedRollouts, verl_rows

pytest.importorskip("transfer_queue", reason="verl's V1 trainer needs TransferQueue (verl's verl-core extra)")
from mopps.core.metrics import PREDICTION_KEYS, SELECTION_REPORT_KEYS  # noqa: E402
from mopps.integrations.verl import trainer as trainer_module  # noqa: E402

MoPPSTrainer = trainer_module.MoPPSTrainer


def build_trainer(config) -> MoPPSTrainer:
    """``MoPPSTrainer(config)`` plus the CPU parts of ``init()`` (tokenizer-free dataloader)."""
    trainer = MoPPSTrainer(config)
    trainer.tokenizer = None
    trainer.processor = None
    trainer._init_dataloader()
    trainer.global_steps = 1
    return trainer


def outcomes(index: int) -> list[float]:
    """Per-prompt session results: index % 4 == 0 all wrong, == 1 all right (both zero-variance, so
    DAPO drops them), else mixed; group sizes 3, 4 or 5."""
    size = 3 + index % 3
    if index % 4 == 0:
        return [0.0] * size
    if index % 4 == 1:
        return [1.0] * size
    return [1.0] + [0.0] * (size - 1)


def test_trainer_is_registered_with_verls_registry():
    from verl.trainer.ppo.v1 import get_trainer_cls

    assert get_trainer_cls("mopps") is MoPPSTrainer
    assert trainer_module.setup_worker() is None


def test_selects_batch_from_ts_ratio_candidates(write_parquet, verl_config):
    trainer = build_trainer(verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=4))
    batch = trainer._next_train_batch()
    assert batch.batch_size[0] == 4
    metrics = trainer.ledger.pop_metrics()
    assert metrics["mopps/candidates"] == 16 and metrics["mopps/selected"] == 4
    assert len(set(batch["uid"])) == 4
    assert set(trainer.ledger.keys_of().values()) <= {f"countdown/{i}" for i in range(40)}
    assert batch["global_steps"] == 1


def test_learns_from_every_group_before_the_dapo_filter(write_parquet, verl_config, memory_queue):
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, dapo=True, ts_ratio=2, bandit_decay_ratio=1.0)
    trainer = build_trainer(config)
    rollouts = ScriptedRollouts(memory_queue, outcomes, multi_output=range(0, 40, 5))
    trainer.agent_loop_manager = rollouts

    still_queued = []
    observe = trainer.observe_rollouts

    def observe_and_check(uids, rewards):
        queued = memory_queue.tags["train"]
        still_queued.append(all(uid in queued for uid in uids))
        observe(uids, rewards)

    trainer.replay_buffer._on_finished = observe_and_check

    trainer.prepare_step()
    batch, metrics = trainer.replay_buffer.sample(global_steps=1, partition_id="train", batch_size=4)

    assert metrics["training/filter_groups/evicted_samples"] > 0
    assert all(still_queued) and still_queued
    # Every rolled-out session is counted once: filtered groups and discarded surplus included, and a
    # multi-output session once, not per output.
    indices = sorted(rollouts.sessions_by_index)
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in indices])
    for index, a, b in zip(indices, alpha, beta):
        sessions = rollouts.sessions_by_index[index]
        rounds = sessions // len(outcomes(index))
        expected_successes = rounds * sum(outcomes(index))
        assert (a - 1.0, b - 1.0) == (expected_successes, sessions - expected_successes)
    # The batch verl trains on holds only groups with signal, as DAPO wants.
    trained_uids = {key.split("_")[0] for key in batch.keys}
    assert len(trained_uids) == 4
    assert all(uid in rollouts.uids for uid in trained_uids)
    assert trainer.ledger.pop_metrics()["mopps/observed_groups"] == len(rollouts.uids)


def test_groups_by_uid_in_any_row_order(write_parquet, verl_config):
    trainer = build_trainer(verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=2,
                                        bandit_decay_ratio=1.0))
    batch = trainer._next_train_batch()
    key_of = trainer.ledger.keys_of()
    rows = [(uid, float(session % 2)) for uid in batch["uid"] for session in range(2 + len(key_of[uid]) % 3)]
    order = np.random.default_rng(3).permutation(len(rows))  # as balance_batch would leave them
    trainer.observe_rollouts([rows[i][0] for i in order], np.asarray([rows[i][1] for i in order]))
    for uid in batch["uid"]:
        size = 2 + len(key_of[uid]) % 3
        alpha, beta = trainer.selector.posterior([key_of[uid]])
        assert (alpha[0] - 1, beta[0] - 1) == (size // 2, size - size // 2)


def test_refuses_rows_without_extra_info_index(write_parquet, verl_config):
    rows = verl_rows(12, index_of=lambda i: None if i == 7 else i)
    with pytest.raises(ValueError, match="row 7: extra_info.index is missing"):
        build_trainer(verl_config(write_parquet(rows), ts_ratio=2))


def test_refuses_repeated_indices(write_parquet, verl_config):
    rows = verl_rows(12, index_of=lambda i: i % 10)
    with pytest.raises(ValueError, match="rows 0 and 10 share the prompt key 'countdown/0'"):
        build_trainer(verl_config(write_parquet(rows), ts_ratio=2))


def test_rejects_unknown_mopps_key(write_parquet, verl_config):
    with pytest.raises(ValueError, match="mopps.ts_ration is not a MoPPS setting"):
        MoPPSTrainer(verl_config(write_parquet(verl_rows(8)), ts_ration=2))


def test_refuses_a_colocated_reward_model(write_parquet, verl_config):
    # A colocated reward model writes rm_scores and reward extras only after the replay buffer has
    # sampled, so the observer would find nothing to learn from; refuse it before anything is built.
    config = verl_config(write_parquet(verl_rows(8)), ts_ratio=2)
    config.reward.reward_model.enable = True
    with pytest.raises(ValueError, match="reward.reward_model.enable_resource_pool"):
        MoPPSTrainer(config)
    config.reward.reward_model.enable_resource_pool = True  # a separate pool scores during rollout
    assert build_trainer(config).mopps_config.ts_ratio == 2


class StubWorkers:
    """The actor worker group's checkpoint calls, without GPUs."""

    def save_checkpoint(self, local_path, remote_path, global_steps, max_ckpt_to_keep=None):
        self.saved = local_path

    def load_checkpoint(self, local_path, del_local_after_load=False):
        self.loaded = local_path


def test_selector_state_travels_with_verl_checkpoints(write_parquet, verl_config):
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=2)
    trainer = build_trainer(config)
    trainer.actor_rollout_wg = StubWorkers()
    batch = trainer._next_train_batch()
    trainer.observe_rollouts(list(batch["uid"]) * 3, np.tile([1.0, 0.0, 1.0, 0.0], 3))
    trainer.global_steps = 5
    trainer._save_checkpoint()

    config.trainer.resume_mode = "auto"
    resumed = build_trainer(config)
    resumed.actor_rollout_wg = StubWorkers()
    resumed._load_checkpoint()
    assert resumed.global_steps == 5
    assert resumed.selector.state_dict()["arrays"]["ids"] == trainer.selector.state_dict()["arrays"]["ids"]
    np.testing.assert_array_equal(resumed.selector.state_dict()["arrays"]["alpha"],
                                  trainer.selector.state_dict()["arrays"]["alpha"])
    keys = [f"countdown/{i}" for i in range(40)]
    assert resumed.selector.select(keys, 4).ids == trainer.selector.select(keys, 4).ids


def test_resume_from_a_checkpoint_without_selector_state_is_refused(write_parquet, verl_config, tmp_path):
    config = verl_config(write_parquet(verl_rows(16)), ts_ratio=2)
    (tmp_path / "checkpoints" / "global_step_3").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("3")
    config.trainer.resume_mode = "auto"
    trainer = build_trainer(config)
    trainer.actor_rollout_wg = StubWorkers()
    with pytest.raises(FileNotFoundError, match="mopps_selector.npz"):
        trainer._load_checkpoint()


def test_three_sync_steps_learn_and_log_through_verls_metrics(write_parquet, verl_config, memory_queue,
                                                              monkeypatch):
    trainer = build_trainer(verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=3,
                                        bandit_decay_ratio=1.0))
    rollouts = ScriptedRollouts(memory_queue, outcomes)
    trainer.agent_loop_manager = rollouts
    # verl's own metric code needs the GPU workers' tensors; keep only the adapter's addition.
    monkeypatch.setattr(trainer_module.PPOTrainerSync, "_compute_metrics", lambda *args, **kwargs: None)
    for step in (1, 2, 3):
        trainer.global_steps = step
        trainer.prepare_step()
        batch, _ = trainer.replay_buffer.sample(global_steps=step, partition_id="train", batch_size=4)
        memory_queue.kv_clear(batch.keys, "train")  # fit() clears the trained trajectories
        metrics = {}
        trainer._compute_metrics(batch, metrics, {}, global_steps=step, epoch=0)
        assert metrics["mopps/observed_groups"] == 4 and metrics["mopps/candidates"] == 12
        assert 0.0 <= metrics["mopps/zero_variance_frac"] <= 1.0
        # The shared report's names (the same as TRL's) plus verl's own extras.
        extras = {"mopps/candidates", "mopps/selected", "mopps/observed_groups", "mopps/posterior_size"}
        extras |= {f"mopps/draw/{name}" for name in PREDICTION_KEYS}
        assert set(metrics) == {f"mopps/{name}" for name in SELECTION_REPORT_KEYS} | extras
    assert trainer.selector.step == 3
    assert metrics["mopps/posterior_size"] == len(trainer.selector)
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in rollouts.sessions_by_index])
    assert (alpha + beta - 2.0).sum() == sum(rollouts.sessions_by_index.values())  # every session, once
