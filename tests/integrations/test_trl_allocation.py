"""Rollout allocation inside MoPPSGRPOTrainer (``rollout_allocation``), on CPU with the tiny model.

TRL generates ``num_generations`` answers per prompt at a time, so a round that gives a prompt
c * num_generations rollouts shows it as c consecutive TRL groups, and a trained group is
``rollout_allocation_group_size`` rollouts (pilot + commit). Checked from the outside: every scored
rollout reached the selector once; a trained prompt's group holds its pilot completions (pilot reuse)
and its advantages are normalised over the whole group; the step's rounds and rollouts are logged;
a resumed run repeats the uninterrupted run's choices; bad settings name their field.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")

from _tiny_trl import (  # noqa: E402
    RecordingMoPPS,
    addition_dataset,
    contains_answer,
    logged,
    rescore,
    tiny_grpo_config,
    tiny_model,
    tiny_tokenizer,
    TrainedBatches,
)

from mopps.integrations.trl import CHECKPOINT_FILE, MoPPSGRPOConfig  # noqa: E402
from mopps.storage import load_state  # noqa: E402

TOKENIZER = tiny_tokenizer()
GENERATIONS = 4
DATASET = addition_dataset()


def completion_log(log: list):
    """``contains_answer`` that appends ``(prompt_id, completion)`` of every rollout it scores to ``log``."""

    def logged(completions, answer, prompt_id, **kwargs) -> list[float]:
        log.extend(zip(prompt_id, completions))
        return contains_answer(completions, answer)

    return logged


def make_trainer(output_dir, reward_funcs=contains_answer, selector=None, **config):
    config = {"rollout_allocation": "pilot_commit", "per_device_train_batch_size": 32, **config}
    return TrainedBatches(model=tiny_model(TOKENIZER), reward_funcs=reward_funcs,
                          args=tiny_grpo_config(output_dir, **config), train_dataset=DATASET,
                          processing_class=TOKENIZER, selector=selector)


@pytest.mark.slow
def test_pilot_commit_trains_pilot_plus_commit_groups_and_counts_every_rollout(tmp_path):
    scored: list[tuple[int, str]] = []
    trainer = make_trainer(tmp_path, reward_funcs=completion_log(scored), max_steps=2)
    trainer.train()
    # Pilot-Commit with num_generations = 4: a pilot of 4 (a quarter) in groups of 16, 32 rows per
    # generation = 2 trained prompts; the pilot covers 3 x 2 prompts.
    assert trainer.group_rows == 16 and trainer.prompts_per_generation == 2
    assert len(trainer.trained) == 2
    per_step = 6 * 4 + 2 * 12
    assert len(scored) == trainer.loop.rollouts == 2 * per_step
    assert set(logged(trainer, "mopps/allocated_rollouts")) == {float(per_step)}
    assert set(logged(trainer, "mopps/pilot_rollouts")) == {24.0}
    assert set(logged(trainer, "mopps/trained_rollouts")) == {32.0}
    offset = 0
    for batch in trainer.trained:
        step_scored = scored[offset:offset + per_step]
        offset += per_step
        pilot, commit = step_scored[:24], step_scored[24:]
        for index, position in enumerate(batch["positions"]):
            prompt_id = DATASET[position]["prompt_id"]
            rows = slice(index * 16, (index + 1) * 16)
            assert batch["prompts"][rows] == [DATASET[position]["prompt"]] * 16
            # The group is the prompt's 4 pilot completions, then its 12 commit completions.
            expected = [completion for pid, completion in pilot if pid == prompt_id] + \
                [completion for pid, completion in commit if pid == prompt_id]
            assert len(expected) == 16
            assert [text.strip() for text in batch["completions"][rows]] == [text.strip() for text in expected]
            # Advantages normalised over the whole group of 16 (TRL's formula, scale_rewards="group").
            rewards = np.array(rescore(batch["prompts"][rows], batch["completions"][rows]))
            advantages = np.array(batch["advantages"][rows])
            centred = rewards - rewards.mean()
            scale = rewards.std(ddof=1) + 1e-4
            np.testing.assert_allclose(advantages, centred / scale, atol=1e-5)
        assert batch["num_items_in_batch"] == batch["loss_tokens"]


@pytest.mark.slow
def test_mopps_pilot_resumes_exactly(tmp_path):
    settings = dict(rollout_allocation="mopps_pilot", per_device_train_batch_size=16, max_steps=4,
                    save_strategy="steps", save_steps=2)
    full = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path / "full", selector=full, **settings)
    trainer.train()
    assert trainer.group_rows == 8 and trainer.prompts_per_generation == 2  # pilot = half the group
    assert len(logged(trainer, "mopps/pilot_rollouts")) == 4
    assert all(value >= 8 for value in logged(trainer, "mopps/pilot_rollouts"))  # 2 prompts x 4 at least
    checkpoint = tmp_path / "full" / "checkpoint-2"
    done = load_state(checkpoint / CHECKPOINT_FILE)["loop"]["step"]

    resumed = RecordingMoPPS(seed=0)
    again = make_trainer(tmp_path / "resumed", selector=resumed, **settings)
    again.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.choices == full.choices[done:]
    assert [batch["positions"] for batch in again.trained] == [batch["positions"] for batch in trainer.trained[2:]]
    assert again.loop.rollouts == trainer.loop.rollouts
    for name, values in full.state_dict()["arrays"].items():
        np.testing.assert_array_equal(resumed.state_dict()["arrays"][name], values)


@pytest.mark.parametrize("overrides, match", [
    (dict(rollout_allocation="pilots"), "rollout_allocation"),
    (dict(rollout_allocation="mopps_pilot", max_num_gen_batches=2), "max_num_gen_batches"),
    (dict(rollout_allocation="mopps_pilot", rollout_allocation_group_size=1), "rollout_allocation_group_size"),
])
def test_bad_allocation_settings_name_the_field(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_grpo_config(tmp_path, **overrides)


def test_the_one_field_reads_from_a_trl_yaml_file(tmp_path):
    trl = pytest.importorskip("trl")
    config = tmp_path / "grpo.yaml"
    config.write_text("output_dir: runs/x\nuse_cpu: true\nrollout_allocation: mopps_pilot\n"
                      "rollout_allocation_group_size: 8\n")
    (args,) = trl.TrlParser(MoPPSGRPOConfig).parse_args_and_config(["--config", str(config)])
    assert isinstance(args, MoPPSGRPOConfig)
    assert args.rollout_allocation == "mopps_pilot" and args.rollout_allocation_group_size == 8


@pytest.mark.slow
def test_a_group_size_whose_rounds_do_not_split_into_trl_groups_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rollout_allocation_group_size = 12.*multiples of 4"):
        make_trainer(tmp_path, rollout_allocation="mopps_pilot", rollout_allocation_group_size=12)
    with pytest.raises(ValueError, match="does not divide generation_batch_size"):
        make_trainer(tmp_path, rollout_allocation="pilot_commit", per_device_train_batch_size=8)
