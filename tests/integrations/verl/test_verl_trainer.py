"""The V1 trainer (verl 0.9.1) on CPU: selection before rollout by the loop, learning from every group
before the DAPO filter, grouping by uid, verdicts, refusing bad indices, checkpoint round trip,
ready selectors and features, registration.

The trainer object is verl's real one (``MoPPSTrainer(config)``), with its real dataset, replay
buffer, ``step`` and checkpoint code; worker groups (GPU), the rollout engine and the TransferQueue
service are replaced (see conftest), and so is ``_step_once``'s GPU part (old log-probs, advantages,
actor update): it only samples verl's replay buffer. ``fit`` itself is not run.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from _verl_helpers import FeatureRecorder, ScriptedRollouts, verl_rows

pytest.importorskip("transfer_queue", reason="verl's V1 trainer needs TransferQueue (verl's verl-core extra)")
from mopps import HistoryFilter, MoPPS  # noqa: E402
from mopps.core.metrics import GROUP_KEYS, PREDICTION_KEYS  # noqa: E402
from mopps.integrations.verl import trainer as trainer_module  # noqa: E402

MoPPSTrainer = trainer_module.MoPPSTrainer


def build_trainer(config, selector=None) -> MoPPSTrainer:
    """``MoPPSTrainer(config)`` plus the CPU parts of ``init()`` (tokenizer-free dataloader)."""
    trainer = MoPPSTrainer(config, selector=selector)
    trainer.tokenizer = None
    trainer.processor = None
    trainer._init_dataloader()
    trainer.global_steps = 1
    return trainer


def run_step(trainer, step: int) -> tuple:
    """verl's own ``PPOTrainer.step`` for global step ``step``, its GPU part left out: returns the
    sampled batch (``KVBatchMeta``) and the step's metrics, and clears the batch as ``fit`` does."""
    import transfer_queue

    def sample_only(metrics, timing_raw, sample_batch_size):
        batch, sample_metrics = trainer.replay_buffer.sample(global_steps=trainer.global_steps, partition_id="train",
                                                             batch_size=sample_batch_size)
        metrics.update(sample_metrics)
        return batch

    trainer._step_once = sample_only
    trainer.global_steps = step
    metrics = {}
    batch = trainer.step(metrics, {})
    transfer_queue.kv_clear(keys=batch.keys, partition_id="train")
    return batch, metrics


def trained_and_resumed(config, memory_queue, outcomes_of, steps: int):
    """A trainer run for ``steps`` steps on ``outcomes_of`` and checkpointed, and a second trainer
    resumed from that checkpoint (``resume_mode="auto"``): ``(trainer, resumed)``."""
    trainer = build_trainer(config)
    trainer.actor_rollout_wg = StubWorkers()
    trainer.agent_loop_manager = ScriptedRollouts(memory_queue, outcomes_of)
    for step in range(1, steps + 1):
        run_step(trainer, step)
    trainer._save_checkpoint()
    config.trainer.resume_mode = "auto"
    resumed = build_trainer(config)
    resumed.actor_rollout_wg = StubWorkers()
    resumed._load_checkpoint()
    return trainer, resumed


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


def test_the_loop_chooses_the_batch_from_ts_ratio_candidates(write_parquet, verl_config):
    trainer = build_trainer(verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=4))
    batch = trainer._next_train_batch()
    assert batch.batch_size[0] == 4 and len(set(batch["uid"])) == 4 and batch["global_steps"] == 1
    chosen = [f"countdown/{int(info['index'])}" for info in batch["extra_info"]]
    assert len(set(chosen)) == 4 and trainer.loop.step == 1
    metrics = trainer.observe_finished()
    assert metrics["mopps/candidates"] == 16 and metrics["mopps/selected"] == 4
    assert metrics["mopps/posterior_size"] == 0  # nothing rolled out yet


def test_learns_from_every_group_before_the_dapo_filter(write_parquet, verl_config, memory_queue):
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, dapo=True, ts_ratio=2, bandit_decay_ratio=1.0)
    trainer = build_trainer(config)
    rollouts = ScriptedRollouts(memory_queue, outcomes, multi_output=range(0, 40, 5))
    trainer.agent_loop_manager = rollouts

    still_queued = []
    read = trainer.replay_buffer._on_finished

    def read_and_check(groups, uids, rewards, has_verdict):
        still_queued.append(all(uid in memory_queue.tags["train"] for uid in groups))
        read(groups, uids, rewards, has_verdict)

    trainer.replay_buffer._on_finished = read_and_check
    batch, metrics = run_step(trainer, 1)

    assert metrics["training/filter_groups/evicted_samples"] > 0
    assert all(still_queued) and still_queued
    # Every rolled-out session is counted once: filtered groups and discarded surplus included, and a
    # multi-output session once, not per output.
    indices = sorted(rollouts.sessions_by_index)
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in indices])
    for index, a, b in zip(indices, alpha, beta):
        sessions = rollouts.sessions_by_index[index]
        expected_successes = sessions // len(outcomes(index)) * sum(outcomes(index))
        assert (a - 1.0, b - 1.0) == (expected_successes, sessions - expected_successes)
    # The batch verl trains on holds only groups with signal, as DAPO wants.
    trained_uids = {key.split("_")[0] for key in batch.keys}
    assert len(trained_uids) == 4 and trained_uids <= set(rollouts.uids)
    assert metrics["mopps/observed_groups"] == len(indices)
    assert metrics["mopps/rollouts"] == sum(rollouts.sessions_by_index.values())
    assert metrics["mopps/selected"] == len(rollouts.uids)  # the first batch and every refill
    assert metrics["mopps/open_predictions"] == 0


def test_rollouts_without_a_verdict_are_no_evidence(write_parquet, verl_config, memory_queue):
    # compute_score's has_verdict = 0 (a grader timeout): that rollout counts in no trial, so a
    # prompt's trials are fewer than its n sessions; a prompt with no verdict at all is not learned.
    def verdicts(index):
        return [0.0] * len(outcomes(index)) if index % 5 == 0 else [1.0, 0.0] + [1.0] * (len(outcomes(index)) - 2)

    config = verl_config(write_parquet(verl_rows(40)), batch_size=8, ts_ratio=2, bandit_decay_ratio=1.0)
    trainer = build_trainer(config)
    trainer.agent_loop_manager = rollouts = ScriptedRollouts(memory_queue, outcomes, verdicts=verdicts)
    _, metrics = run_step(trainer, 1)

    indices = sorted(rollouts.sessions_by_index)
    assert any(i % 5 == 0 for i in indices) and any(i % 5 for i in indices)
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in indices])
    for index, a, b in zip(indices, alpha, beta):
        judged = np.asarray(verdicts(index)) > 0
        successes = float(np.asarray(outcomes(index))[judged].sum())
        assert (a - 1.0, b - 1.0) == (successes, judged.sum() - successes)
        assert judged.sum() < len(outcomes(index))
    unjudged = sum(len(outcomes(i)) - int(np.sum(verdicts(i))) for i in indices)
    assert metrics["mopps/rollouts_without_verdict"] == unjudged
    assert metrics["mopps/observed_groups"] == sum(1 for i in indices if i % 5)
    assert metrics["mopps/open_predictions"] == 0  # a prompt without any verdict still closes its prediction


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


def test_the_loop_state_travels_with_verl_checkpoints_and_resume_reproduces_choices(write_parquet, verl_config,
                                                                                   memory_queue):
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=3, bandit_decay_ratio=0.5)
    trainer, resumed = trained_and_resumed(config, memory_queue, outcomes, steps=3)
    assert resumed.global_steps == 3 and resumed.loop.step == 3
    saved, restored = trainer.loop.state_dict(), resumed.loop.state_dict()
    assert restored["stream"] == saved["stream"]
    np.testing.assert_array_equal(restored["selector"]["arrays"]["alpha"], saved["selector"]["arrays"]["alpha"])
    assert restored["selector"]["arrays"]["ids"] == saved["selector"]["arrays"]["ids"]
    for _ in range(12):  # past the end of the first epoch (40 rows, 12 candidates per step)
        expected = trainer._next_train_batch()["extra_info"]
        assert [info["index"] for info in resumed._next_train_batch()["extra_info"]] == [i["index"] for i in expected]


def test_resume_from_a_checkpoint_without_loop_state_is_refused(write_parquet, verl_config, tmp_path):
    config = verl_config(write_parquet(verl_rows(16)), ts_ratio=2)
    (tmp_path / "checkpoints" / "global_step_3").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("3")
    config.trainer.resume_mode = "auto"
    trainer = build_trainer(config)
    trainer.actor_rollout_wg = StubWorkers()
    with pytest.raises(FileNotFoundError, match="mopps_loop.npz"):
        trainer._load_checkpoint()


def test_an_older_checkpoint_holding_only_the_selector_is_migrated(write_parquet, verl_config, tmp_path):
    # mopps <= 0.1 wrote global_step_N/mopps_selector.npz (a MoPPS state); its posterior carries over.
    config = verl_config(write_parquet(verl_rows(16)), ts_ratio=2, bandit_decay_ratio=0.5)
    folder = tmp_path / "checkpoints" / "global_step_3"
    folder.mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("3")
    old = MoPPS(discount=0.5, seed=0)
    old.update(["countdown/2", "countdown/5"], [3.0, 0.0], [4.0, 4.0])
    old.save(folder / "mopps_selector.npz")
    config.trainer.resume_mode = "auto"
    trainer = build_trainer(config)
    trainer.actor_rollout_wg = StubWorkers()
    trainer._load_checkpoint()
    np.testing.assert_allclose(trainer.selector.posterior(["countdown/2", "countdown/5"]), old.posterior(
        ["countdown/2", "countdown/5"]))
    assert trainer.loop.step == 0 and trainer.selector.step == 1
    # one saved with other MoPPS settings is refused, not silently reinterpreted
    config.mopps.bandit_decay_ratio = 1.0
    other = build_trainer(config)
    other.actor_rollout_wg = StubWorkers()
    with pytest.raises(ValueError, match="discount"):
        other._load_checkpoint()


def test_three_sync_steps_learn_and_log_through_verls_step(write_parquet, verl_config, memory_queue):
    trainer = build_trainer(verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=3,
                                        bandit_decay_ratio=1.0))
    rollouts = ScriptedRollouts(memory_queue, outcomes)
    trainer.agent_loop_manager = rollouts
    for step in (1, 2, 3):
        _, metrics = run_step(trainer, step)
        mopps = {name for name in metrics if name.startswith("mopps/")}
        assert metrics["mopps/observed_groups"] == 4 and metrics["mopps/candidates"] == 12
        assert metrics["mopps/lag"] == 0.0  # each step learns before the next one chooses
        assert 0.0 <= metrics["mopps/zero_variance_frac"] <= 1.0
        counts = {"candidates", "selected", "observed_groups", "rollouts", "rollouts_without_verdict",
                  "unpredicted_groups", "open_predictions", "cumulative_rollouts", "lag", "posterior_size"}
        assert mopps == {f"mopps/{name}" for name in counts | set(GROUP_KEYS) | set(PREDICTION_KEYS)}
    assert trainer.selector.step == 3 and trainer.loop.step == 3
    assert metrics["mopps/posterior_size"] == len(trainer.selector) == 12
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in rollouts.sessions_by_index])
    assert (alpha + beta - 2.0).sum() == sum(rollouts.sessions_by_index.values())  # every session, once


def test_takes_a_ready_selector_or_a_selector_class_from_config(write_parquet, verl_config, memory_queue):
    train_file = write_parquet(verl_rows(40))
    ready = HistoryFilter(seed=3)
    trainer = build_trainer(verl_config(train_file, batch_size=4, ts_ratio=2), selector=ready)
    assert trainer.loop.selector is ready
    trainer.agent_loop_manager = ScriptedRollouts(memory_queue, outcomes)
    run_step(trainer, 1)
    assert ready.step == 1

    named = build_trainer(verl_config(train_file, ts_ratio=2, selector_class="mopps.HistoryFilter",
                                      selector_kwargs={"target_zero_variance": 0.1}, seed=4))
    assert isinstance(named.selector, HistoryFilter)
    assert named.selector.state_dict()["config"]["target_zero_variance"] == 0.1
    assert named.selector.state_dict()["rng"] == HistoryFilter(seed=4).state_dict()["rng"]


def test_refuses_bandit_settings_that_a_given_selector_would_ignore(write_parquet, verl_config):
    train_file = write_parquet(verl_rows(16))
    with pytest.raises(ValueError, match="mopps.bandit_decay_ratio = 0.5 configures the built-in MoPPS, but a ready"):
        MoPPSTrainer(verl_config(train_file, ts_ratio=2, bandit_decay_ratio=0.5), selector=HistoryFilter(seed=0))
    with pytest.raises(ValueError, match="mopps.bandit_sample_strategy = 'threshold' .* selector_class"):
        MoPPSTrainer(verl_config(train_file, selector_class="mopps.Uniform", bandit_sample_strategy="threshold"))
    with pytest.raises(ValueError, match="mopps.selector_class = 'mopps.Nope' cannot be imported"):
        MoPPSTrainer(verl_config(train_file, selector_class="mopps.Nope"))


def feature_rows(count: int) -> list[dict]:
    rows = verl_rows(count, index_of=lambda i: 100 + i)
    for i, row in enumerate(rows):
        row["extra_info"]["embedding"] = [float(i), float(i) ** 2, -1.0]
    return rows


def test_features_from_a_parquet_column_reach_the_selector(write_parquet, verl_config, memory_queue):
    config = verl_config(write_parquet(feature_rows(12)), ts_ratio=2, selector_class="_verl_helpers:FeatureRecorder",
                         features_column="extra_info.embedding")
    trainer = build_trainer(config)
    assert isinstance(trainer.selector, FeatureRecorder) and len(trainer.selector.calls) == 1
    ids, features = trainer.selector.calls[0]
    assert ids == [f"countdown/{100 + i}" for i in range(12)]
    np.testing.assert_array_equal(features, [[i, i * i, -1.0] for i in range(12)])
    trainer.agent_loop_manager = ScriptedRollouts(memory_queue, outcomes)
    run_step(trainer, 1)  # and it still trains

    config.mopps.features_column = "extra_info.missing"
    with pytest.raises(ValueError, match="mopps.features_column = 'extra_info.missing': row 0 has no 'missing'"):
        build_trainer(config)


def test_features_for_a_selector_that_takes_none_are_refused(write_parquet, verl_config):
    # The same policy as TRL's (ReferenceSettings.build_selector): an error naming the key, not a warning.
    config = verl_config(write_parquet(feature_rows(12)), features_column="extra_info.embedding")
    with pytest.raises(ValueError, match="mopps.features_column = 'extra_info.embedding' is set but MoPPS takes no"):
        MoPPSTrainer(config)


def test_features_from_a_file_keyed_by_verl_prompt_keys(write_parquet, verl_config, tmp_path):
    from mopps.features import save_features

    path = tmp_path / "features.npz"
    # The file covers prompts verl left out (200) and lacks one it keeps (111): only the overlap goes in.
    ids = [f"countdown/{100 + i}" for i in range(11)] + ["countdown/200"]
    save_features(path, ids, np.arange(24, dtype=np.float32).reshape(12, 2), {"source": "test"})
    config = verl_config(write_parquet(feature_rows(12)), ts_ratio=2, selector_class="_verl_helpers:FeatureRecorder",
                         features_path=str(path))
    trainer = build_trainer(config)
    [(given_ids, features)] = trainer.selector.calls
    assert given_ids == ids[:11]
    np.testing.assert_array_equal(features, np.arange(22).reshape(11, 2))

    save_features(path, [100, 101], np.ones((2, 2), dtype=np.float32), {"source": "test"})
    with pytest.raises(ValueError, match="mopps.features_path = .* keyed by int ids.*--id verl"):
        build_trainer(config)
    save_features(path, ["other/1"], np.ones((1, 2), dtype=np.float32), {"source": "test"})
    with pytest.raises(ValueError, match="mopps.features_path = .*none of the 1 prompt ids .* is a prompt id here"):
        build_trainer(config)


def test_refill_keeps_informative_groups_chosen_by_the_selector_and_learns_from_all(write_parquet, verl_config,
                                                                                     memory_queue):
    # mopps.max_num_gen_batches: mopps.Refill assembles the batch (selection-guided dynamic sampling).
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=2, bandit_decay_ratio=1.0,
                         max_num_gen_batches=6)
    trainer = build_trainer(config)
    trainer.agent_loop_manager = rollouts = ScriptedRollouts(memory_queue, outcomes)
    batch, metrics = run_step(trainer, 1)

    trained = {key.split("_")[0] for key in batch.keys}
    indices_of_uid = dict(zip(rollouts.uids, rollouts.submitted_indices))
    assert len(trained) == 4 and all(0 < sum(outcomes(indices_of_uid[uid])) < len(outcomes(indices_of_uid[uid]))
                                     for uid in trained)
    rounds = metrics["mopps/generation_batches"]
    assert 2 <= rounds < 6 and len(rollouts.uids) == 4 * rounds and trainer.loop.step == rounds
    assert metrics["mopps/kept_groups"] == 4 and metrics["mopps/selected"] == 4  # per generation batch
    # One set of metrics with every round counted: a round's metrics are averaged over the rounds.
    assert metrics["mopps/rollouts"] * rounds == metrics["mopps/generated_rollouts"]
    assert metrics["mopps/cumulative_rollouts"] == metrics["mopps/generated_rollouts"]
    assert metrics["mopps/generated_rollouts"] == sum(rollouts.sessions_by_index.values())
    assert metrics["mopps/trained_rollouts"] == len(batch.keys) and metrics["mopps/kept_share"] == 1 / rounds
    assert (metrics["mopps/trained_groups"], metrics["mopps/trained_zero_variance_frac"]) == (4, 0.0)
    # every generated group taught the selector, kept or not; the rest were cleared from the queue
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in rollouts.sessions_by_index])
    assert (alpha + beta - 2.0).sum() == sum(rollouts.sessions_by_index.values())
    assert memory_queue.tags["train"] == {}


def test_refill_at_its_cap_trains_on_the_last_generation_batch(write_parquet, verl_config, memory_queue):
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=2, max_num_gen_batches=3)
    trainer = build_trainer(config)
    trainer.agent_loop_manager = rollouts = ScriptedRollouts(memory_queue, lambda index: [1.0, 1.0, 1.0])
    batch, metrics = run_step(trainer, 1)
    assert (metrics["mopps/generation_batches"], metrics["mopps/kept_groups"]) == (3, 0)
    assert (metrics["mopps/trained_groups"], metrics["mopps/trained_zero_variance_frac"]) == (4, 1.0)
    assert {key.split("_")[0] for key in batch.keys} == set(rollouts.uids[-4:])
    assert memory_queue.tags["train"] == {}


def test_refill_at_its_cap_fills_with_groups_not_kept_and_gives_them_advantage_zero(write_parquet, verl_config,
                                                                                       memory_queue, monkeypatch):
    # The loop's at-cap rule (RefillResult.trained_groups, 'fill'), as TRL applies it.
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=2, max_num_gen_batches=2)
    trainer = build_trainer(config)
    mixed = lambda index: [1.0, 0.0, 0.0] if index % 8 == 0 else [1.0, 1.0, 1.0]  # noqa: E731
    trainer.agent_loop_manager = rollouts = ScriptedRollouts(memory_queue, mixed)
    batch, metrics = run_step(trainer, 1)
    index_of_uid = dict(zip(rollouts.uids, rollouts.submitted_indices))
    trained = {key.split("_")[0] for key in batch.keys}
    kept = {uid for uid in trained if index_of_uid[uid] % 8 == 0}
    assert 0 < len(kept) < 4 and metrics["mopps/kept_groups"] == len(kept)
    assert len(trained) == 4 and metrics["mopps/trained_zero_variance_frac"] == 1 - len(kept) / 4
    assert trained - kept <= set(rollouts.uids[4:])  # the filler comes from the latest round first
    assert memory_queue.tags["train"] == {}  # run_step cleared the trained groups, the refill the others

    def verls_advantages(self, batch, metrics):  # stands in for verl's GRPO: every trajectory gets 1
        ones = [{"advantages": torch.ones(2)} for _ in batch.keys]
        memory_queue.kv_batch_put(batch.keys, batch.partition_id, fields=ones)
        return batch

    monkeypatch.setattr(trainer_module.PPOTrainerSync, "_compute_advantage", verls_advantages)
    trainer._compute_advantage(batch, {})
    for key in batch.keys:
        expected = 1.0 if key.split("_")[0] in kept else 0.0
        assert memory_queue.fields["train"][key]["advantages"].tolist() == [expected, expected]


def test_refill_at_its_cap_raises_when_told_and_refuses_repeat(write_parquet, verl_config, memory_queue):
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, max_num_gen_batches=2,
                         dynamic_sampling_at_cap="raise")
    trainer = build_trainer(config)
    trainer.agent_loop_manager = ScriptedRollouts(memory_queue, lambda index: [1.0, 1.0])
    with pytest.raises(RuntimeError, match="kept 0 informative groups of the 4 wanted after 2 generation batches"):
        run_step(trainer, 1)
    assert memory_queue.tags["train"] == {}
    with pytest.raises(ValueError, match="mopps.dynamic_sampling_at_cap = 'repeat'"):
        MoPPSTrainer(verl_config(write_parquet(verl_rows(16)), max_num_gen_batches=2, dynamic_sampling_at_cap="repeat"))
    with pytest.raises(ValueError, match="mopps.dynamic_sampling_at_cap = 'twice'"):
        MoPPSTrainer(verl_config(write_parquet(verl_rows(16)), max_num_gen_batches=2, dynamic_sampling_at_cap="twice"))


def test_refill_refuses_verls_own_dapo_filter(write_parquet, verl_config):
    with pytest.raises(ValueError, match="algorithm.filter_groups.enable=False"):
        MoPPSTrainer(verl_config(write_parquet(verl_rows(16)), dapo=True, max_num_gen_batches=4))


def test_verdict_mask_is_the_loops_reading_of_has_verdict():
    # It used to read > 0.5: NaN became "no evidence" and 0.7 "evidence" silently.
    from mopps.integrations.verl.config import verdict_mask

    assert verdict_mask(np.array([1.0, 0.0, 1.0])).tolist() == [True, False, True]
    for bad, named in ((np.array([1.0, np.nan]), "has_verdict[1] = nan"), (np.array([0.7, 1.0]), "has_verdict[0] = 0.7")):
        with pytest.raises(ValueError, match=re.escape(named)):
            verdict_mask(bad)


def test_the_evidence_log_is_written_with_checkpoints_and_mopps_replay_reads_it(write_parquet, verl_config,
                                                                                memory_queue, tmp_path):
    from mopps.bench.replay import build_replay_selector, replay
    from mopps.loop import read_evidence_log

    log_path = tmp_path / "evidence.npz"
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=3, bandit_decay_ratio=0.5,
                         evidence_log=str(log_path))
    trainer = build_trainer(config)
    trainer.actor_rollout_wg = StubWorkers()
    rollouts = ScriptedRollouts(memory_queue, outcomes)
    trainer.agent_loop_manager = rollouts
    for step in (1, 2, 3):
        run_step(trainer, step)
    trainer._save_checkpoint()
    stream = read_evidence_log(log_path)
    assert stream.meta["source"] == "verl" and stream.meta["group_size"] == config.actor_rollout_ref.rollout.n
    np.testing.assert_array_equal(stream.steps(), [1, 2, 3])
    rows = stream.rows()
    assert rows["chosen"].sum() == 12 and len(rows["chosen"]) == 36 and not stream.has_exact()
    # Outcomes are what the scripted sessions returned, keyed by verl's prompt keys.
    chosen_ids, trials = rows["prompt_id"][rows["chosen"]], rows["trials"][rows["chosen"]]
    assert all(key.startswith("countdown/") for key in chosen_ids)
    np.testing.assert_array_equal(trials, [len(outcomes(int(key.split("/")[1]))) for key in chosen_ids])
    # Replayed with the run's own selector and seed, MoPPS predicts what it predicted in the run.
    result = replay(stream, build_replay_selector("mopps_lambda0.5", trainer.mopps_config.seed_or(0), 8))
    assert result["steps"] == 3 and not result["exact"]
    replayed = MoPPS(discount=0.5, seed=0)
    for step in (1, 2, 3):
        at = stream.tables["candidates"]["step"] == step
        ids = stream.tables["candidates"]["prompt_id"][at]
        np.testing.assert_allclose(replayed.predict(ids), stream.tables["candidates"]["predicted_rate"][at], rtol=1e-6)
        done = stream.tables["outcomes"]["step"] == step
        replayed.update(stream.tables["outcomes"]["prompt_id"][done], stream.tables["outcomes"]["successes"][done],
                        stream.tables["outcomes"]["trials"][done])


def test_the_loop_is_told_of_each_actor_optimiser_step_after_the_steps_evidence(write_parquet, verl_config,
                                                                                memory_queue, monkeypatch):
    import transfer_queue
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=3)
    config.actor_rollout_ref.actor.ppo_mini_batch_size = 2
    config.actor_rollout_ref.actor.ppo_epochs = 2
    config.actor_rollout_ref.rollout.n = 2
    trainer = build_trainer(config)
    trainer.agent_loop_manager = ScriptedRollouts(memory_queue, outcomes)
    monkeypatch.setattr(PPOTrainer, "_update_actor", lambda self, batch, metrics: batch)  # the GPU part
    expected = 0
    for step in (1, 2):
        observed_at = []

        def sample_and_update(metrics, timing_raw, sample_batch_size):
            batch, sample_metrics = trainer.replay_buffer.sample(global_steps=trainer.global_steps,
                                                                 partition_id="train", batch_size=sample_batch_size)
            metrics.update(sample_metrics)
            observed_at.append(trainer.loop.selector.step)
            return trainer._update_actor(batch, metrics)

        trainer._step_once = sample_and_update
        trainer.global_steps = step
        batch = trainer.step({}, {})
        transfer_queue.kv_clear(keys=batch.keys, partition_id="train")
        # ppo_epochs passes over the batch in mini-batches of 2 prompts x 2 rollouts = 4 rollouts.
        expected += 2 * -(-len(batch.keys) // 4)
        assert trainer.loop.tick == trainer.selector.tick == expected
        # The actor was updated before the step's evidence was observed, the loop told after it.
        assert trainer.selector.step == step and observed_at == [step - 1]


def test_allocation_pilots_merges_each_trained_prompts_uids_into_one_group_and_learns_from_all(
        write_parquet, verl_config, memory_queue):
    # mopps.rollout_allocation: pilot_commit with rollout.n = 4 pilots 1 of 4 (a quarter) on 3 x 4 prompts,
    # then commits 3 more to the 4 trained; each trained prompt's pilot and commit uids become one group.
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, rollout_allocation="pilot_commit")
    config.actor_rollout_ref.rollout.n = 4
    trainer = build_trainer(config)
    trainer.agent_loop_manager = rollouts = ScriptedRollouts(memory_queue, outcomes)
    merged = {}  # trajectory key -> the uid verl's advantage groups it by, as the batch was sampled

    def recording(buffer, batch_size):
        sampled, sample_metrics = trainer._allocation_sample(buffer, batch_size)
        merged.update({key: memory_queue.fields["train"][key]["uid"] for key in sampled.keys})
        return sampled, sample_metrics

    trainer.replay_buffer._fill = recording
    batch, metrics = run_step(trainer, 1)

    index_of_uid = dict(zip(rollouts.uids, rollouts.submitted_indices))
    assert len(rollouts.uids) == 12 + 4  # a pilot row per piloted prompt, a commit row per trained prompt
    assert metrics["mopps/allocated_rollouts"] == 12 * 1 + 4 * 3 == sum(rollouts.sessions_by_index.values())
    assert metrics["mopps/pilot_rollouts"] == 12 and metrics["mopps/trained_rollouts"] == len(batch.keys) == 16
    assert set(merged) == set(batch.keys)
    groups: dict[str, list[str]] = {}
    for key, group in merged.items():
        groups.setdefault(group, []).append(key)
    assert len(groups) == 4 and all(len(keys) == 4 for keys in groups.values())
    for group, keys in groups.items():
        uids = {key.split("_")[0] for key in keys}
        assert len(uids) == 2 and group in uids  # pilot uid + commit uid, named after the pilot's
        assert len({index_of_uid[uid] for uid in uids}) == 1  # one prompt
    # every rollout taught the selector, piloted-only prompts too; the untrained pilots were cleared
    alpha, beta = trainer.selector.posterior([f"countdown/{i}" for i in rollouts.sessions_by_index])
    assert (alpha + beta - 2.0).sum() == sum(rollouts.sessions_by_index.values())
    assert memory_queue.tags["train"] == {}


def test_allocation_settings_verl_cannot_run_are_refused(write_parquet, verl_config):
    rows = write_parquet(verl_rows(16))
    with pytest.raises(ValueError, match="'reinforce_ada' down-samples"):
        build_trainer(verl_config(rows, rollout_allocation="reinforce_ada"))
    config = verl_config(rows, rollout_allocation="mopps_pilot")
    config.algorithm.adv_estimator = "gae"
    with pytest.raises(ValueError, match="adv_estimator = 'gae'"):
        build_trainer(config)
    with pytest.raises(ValueError, match="rollout_allocation = 'mopps_pilot' assembles the batch itself"):
        MoPPSTrainer(verl_config(rows, dapo=True, rollout_allocation="mopps_pilot"))
    with pytest.raises(ValueError, match="mopps.rollout_allocation"):
        MoPPSTrainer(verl_config(rows, rollout_allocation="buffet"))


def test_allocation_resumes_from_a_verl_checkpoint_exactly(write_parquet, verl_config, memory_queue):
    # Outcomes that do not depend on how many rollouts a prompt had before (all equal per prompt, or
    # alternating from any start within a round), so two trainers' rollouts agree round by round.
    steady = lambda index: [1.0] * 8 if index % 3 == 0 else ([0.0] * 8 if index % 3 == 1 else [1.0, 0.0] * 4)  # noqa: E731
    config = verl_config(write_parquet(verl_rows(40)), batch_size=4, ts_ratio=3, bandit_decay_ratio=0.5,
                         rollout_allocation="mopps_pilot")
    config.actor_rollout_ref.rollout.n = 4
    trainer, resumed = trained_and_resumed(config, memory_queue, steady, steps=2)
    resumed.agent_loop_manager = again = ScriptedRollouts(memory_queue, steady)
    trainer.agent_loop_manager = first = ScriptedRollouts(memory_queue, steady)
    _, expected = run_step(trainer, 3)
    _, metrics = run_step(resumed, 3)
    assert first.submitted_indices == again.submitted_indices  # the same pilots, replacements and commits
    assert metrics["mopps/allocated_rollouts"] == expected["mopps/allocated_rollouts"]
    assert resumed.loop.state_dict()["step"] == trainer.loop.state_dict()["step"]
