"""Dynamic sampling inside MoPPSGRPOTrainer (``max_num_gen_batches`` >= 1), on CPU with the tiny model.

What is checked from the outside: the rows TRL trains on (decoded back to prompts and completions and
re-scored here) are the groups the selector's rounds kept, every trained group has unequal rewards,
every generated rollout was scored once and reached the selector, the cap holds, the three at-cap
settings do what they say, every gradient-accumulation schedule keeps lag 0, and a resumed run
repeats the uninterrupted run's choices and refills. The 2-process run is in
``test_trl_distributed.py``; a warm-started model with mixed rewards in ``test_trl_mixed_rewards.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")


from _tiny_trl import (  # noqa: E402
    RecordingMoPPS,
    addition_dataset,
    contains_answer,
    logged,
    prompt_log_reward,
    rescore,
    tiny_grpo_config,
    tiny_model,
    tiny_tokenizer,
    TrainedBatches,
)

from mopps import Uniform  # noqa: E402
from mopps.integrations.trl import CHECKPOINT_FILE  # noqa: E402
from mopps.storage import load_state  # noqa: E402

TOKENIZER = tiny_tokenizer()
GENERATIONS = 4  # tiny_trl_settings' num_generations
DATASET = addition_dataset()



def make_trainer(output_dir, reward_funcs=contains_answer, selector=None, **config):
    config = {"max_num_gen_batches": 6, **config}
    return TrainedBatches(model=tiny_model(TOKENIZER), reward_funcs=reward_funcs,
                          args=tiny_grpo_config(output_dir, **config), train_dataset=DATASET,
                          processing_class=TOKENIZER, selector=selector)


def rescored(batch: dict) -> np.ndarray:
    """contains_answer of every trained row from its decoded prompt and completion, (groups, G)."""
    return np.array(rescore(batch["prompts"], batch["completions"])).reshape(-1, GENERATIONS)


def alternating_for_even_ids(completions, prompt_id, **kwargs) -> list[float]:
    """1, 0, 1, 0 within each group of an even prompt id (always informative), 1.0 for odd ids (never)."""
    return [float(index % 2 == 0) if prompt % 2 == 0 else 1.0 for index, prompt in enumerate(prompt_id)]


def constant_one(completions, **kwargs) -> list[float]:
    return [1.0] * len(completions)


@pytest.mark.slow
def test_only_informative_groups_are_trained_and_every_rollout_is_counted(tmp_path):
    scored: list[int] = []
    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, reward_funcs=prompt_log_reward(scored), selector=selector, max_steps=4)
    trainer.train()

    assert len(trainer.trained) == 4
    rounds = logged(trainer, "mopps/generation_batches")
    assert all(1 <= value <= 6 for value in rounds) and sum(rounds) == len(selector.choices) > 4  # refills happened
    for batch in trainer.trained:
        # The rows are the chosen groups, in TRL's layout, with the completions that were scored.
        expected = [DATASET[position]["prompt"] for position in batch["positions"] for _ in range(GENERATIONS)]
        assert batch["prompts"] == expected
        outcomes = rescored(batch)
        assert ((outcomes.min(axis=1) == 0) & (outcomes.max(axis=1) == 1)).all()
        assert np.abs(batch["advantages"]).reshape(-1, GENERATIONS).max(axis=1).min() > 0
        assert batch["num_items_in_batch"] == batch["loss_tokens"]  # one process: the batch's own tokens
    # Every generated rollout was scored once and taught the selector, kept or not.
    assert len(scored) == trainer.loop.rollouts == GENERATIONS * 2 * len(selector.choices)
    assert sum(logged(trainer, "mopps/generated_rollouts")) == len(scored)
    assert logged(trainer, "mopps/cumulative_rollouts")[-1] == len(scored)
    assert set(logged(trainer, "mopps/trained_rollouts")) == {8.0}
    assert set(logged(trainer, "mopps/trained_groups")) == {2.0}
    generated_groups = np.array(logged(trainer, "mopps/generated_groups"))
    np.testing.assert_array_equal(generated_groups, 2 * np.array(rounds))  # 2 prompts per round
    np.testing.assert_array_equal(generated_groups * GENERATIONS, logged(trainer, "mopps/generated_rollouts"))
    np.testing.assert_allclose(logged(trainer, "mopps/kept_share"),
                               np.array(logged(trainer, "mopps/kept_groups")) / generated_groups)
    assert set(logged(trainer, "mopps/trained_zero_variance_frac")) == {0.0}
    assert set(logged(trainer, "mopps/lag")) == {0.0}
    # Each round's choice saw every earlier round's rewards.
    assert selector.steps == list(range(len(selector.choices)))


@pytest.mark.slow
def test_at_the_cap_fill_trains_the_last_rounds_groups(tmp_path):
    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, reward_funcs=constant_one, selector=selector, max_num_gen_batches=3,
                           max_steps=2)
    trainer.train()
    assert logged(trainer, "mopps/generation_batches") == [3.0, 3.0]  # the cap, every step
    assert logged(trainer, "mopps/kept_groups") == [0.0, 0.0]
    chosen_ids = [[DATASET[position]["prompt_id"] for position in batch["positions"]] for batch in trainer.trained]
    assert chosen_ids == [selector.choices[2], selector.choices[5]]  # the latest round of each step
    assert set(logged(trainer, "mopps/trained_zero_variance_frac")) == {1.0}


@pytest.mark.slow
def test_at_the_cap_raise_stops_the_run(tmp_path):
    trainer = make_trainer(tmp_path, reward_funcs=constant_one, max_num_gen_batches=2,
                           dynamic_sampling_at_cap="raise")
    with pytest.raises(RuntimeError, match="max_num_gen_batches"):
        trainer.train()
    assert trainer.loop.step == 2  # both rounds were rolled out and learned from


@pytest.mark.slow
def test_at_the_cap_repeat_trains_kept_groups_again(tmp_path):
    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, reward_funcs=alternating_for_even_ids, selector=selector, max_num_gen_batches=1,
                           dynamic_sampling_at_cap="repeat", max_steps=6, id_column="prompt_id")
    trainer.train()
    for choice, batch in zip(selector.choices, trainer.trained, strict=True):
        kept = [prompt for prompt in choice if prompt % 2 == 0]
        expected = list(itertools.islice(itertools.cycle(kept), 2)) if kept else choice
        assert [DATASET[position]["prompt_id"] for position in batch["positions"]] == expected
    assert any(len({p % 2 for p in choice}) == 2 for choice in selector.choices), "no step exercised repeat"


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule",
    [
        dict(per_device_train_batch_size=4, gradient_accumulation_steps=2),
        dict(per_device_train_batch_size=2, gradient_accumulation_steps=4, steps_per_generation=2),
        dict(per_device_train_batch_size=4, steps_per_generation=2),
        dict(num_iterations=2),
    ],
    ids=["ga2", "ga4-spg2", "ga1-spg2", "iterations2"],
)
def test_every_schedule_refills_once_per_generation_without_lag(tmp_path, schedule):
    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, selector=selector, **schedule)
    trainer.train()
    micro_steps = trainer.args.max_steps * trainer.args.gradient_accumulation_steps
    generations = -(-micro_steps // (trainer.args.steps_per_generation * trainer.num_iterations))
    assert len(trainer.trained) == generations
    assert selector.steps == list(range(len(selector.choices)))
    assert set(logged(trainer, "mopps/lag")) == {0.0}
    for batch in trainer.trained:
        outcomes = rescored(batch)
        assert ((outcomes.min(axis=1) == 0) & (outcomes.max(axis=1) == 1)).all()


@pytest.mark.slow
def test_resume_repeats_the_choices_and_refills_of_an_uninterrupted_run(tmp_path):
    full = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path / "full", selector=full, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "full" / "checkpoint-2"
    done = load_state(checkpoint / CHECKPOINT_FILE)["loop"]["step"]
    assert done == sum(logged(trainer, "mopps/generation_batches")[:2])

    resumed = RecordingMoPPS(seed=0)
    again = make_trainer(tmp_path / "resumed", selector=resumed, save_strategy="steps", save_steps=2)
    again.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.choices == full.choices[done:]
    assert [batch["positions"] for batch in again.trained] == [batch["positions"] for batch in trainer.trained[2:]]
    # The resumed log history starts with the checkpoint's entries, then continues like the full run's.
    assert logged(again, "mopps/generation_batches") == logged(trainer, "mopps/generation_batches")
    assert logged(again, "mopps/cumulative_rollouts") == logged(trainer, "mopps/cumulative_rollouts")
    assert again.loop.rollouts == trainer.loop.rollouts
    for name, values in full.state_dict()["arrays"].items():
        np.testing.assert_array_equal(resumed.state_dict()["arrays"][name], values)


@pytest.mark.slow
def test_uniform_is_plain_dapo_dynamic_sampling(tmp_path):
    trainer = make_trainer(tmp_path, selector=Uniform(seed=3), max_steps=3)
    trainer.train()
    assert len(trainer.trained) == 3 and set(logged(trainer, "mopps/trained_zero_variance_frac")) == {0.0}
    assert trainer.loop.rollouts == sum(logged(trainer, "mopps/generated_rollouts"))


@pytest.mark.parametrize("settings, match", [
    (dict(scale_rewards="batch"), "scale_rewards = 'batch'"),
    (dict(multi_objective_aggregation="normalize_then_sum"), "multi_objective_aggregation"),
])
def test_round_wide_advantage_settings_are_refused(tmp_path, settings, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, **settings)


def test_an_unknown_at_cap_setting_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="dynamic_sampling_at_cap = 'drop'"):
        make_trainer(tmp_path, dynamic_sampling_at_cap="drop")


@pytest.mark.slow
def test_reference_log_probs_move_with_their_rows(tmp_path):
    # Before the first optimizer step the policy is the reference, so every trained row's KL is 0
    # exactly when its reference log-probs came along with it (a row paired with another row's
    # log-probs, or shifted, would show a KL far from 0).
    # Prompts of 4, 7 and 10 tokens, so rounds differ in width and re-padding moves some prompts.
    dataset = DATASET.map(lambda row, index: {"prompt": "the answer is " * (index % 3) + row["prompt"]},
                          with_indices=True)
    tiny_model(TOKENIZER).save_pretrained(tmp_path / "model")  # TRL loads the reference model from a path
    trainer = TrainedBatches(model=str(tmp_path / "model"), reward_funcs=contains_answer, train_dataset=dataset,
                             args=tiny_grpo_config(tmp_path, max_num_gen_batches=6, beta=0.1, max_steps=1),
                             processing_class=TOKENIZER)
    trainer.train()
    assert logged(trainer, "mopps/generation_batches")[0] > 1  # rows of several rounds were assembled
    assert abs(logged(trainer, "kl")[0]) < 1e-5


def test_a_model_without_rotary_positions_is_refused_when_log_probs_are_reused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(TOKENIZER), n_positions=64,
                        pad_token_id=TOKENIZER.pad_token_id, eos_token_id=TOKENIZER.eos_token_id,
                        bos_token_id=None)

    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")  # TRL loads the reference model from a path

    def build(**settings):
        return TrainedBatches(model=str(tmp_path / "gpt2"), reward_funcs=contains_answer,
                              args=tiny_grpo_config(tmp_path, max_num_gen_batches=4, **settings),
                              train_dataset=DATASET, processing_class=TOKENIZER)

    with pytest.raises(ValueError, match="no rotary position embeddings"):
        build(beta=0.1)
    build(beta=0.0)  # nothing computed before the re-padding is reused: allowed


@pytest.mark.slow
def test_resumed_mid_generation_it_regenerates_the_trained_prompts_without_refilling(tmp_path):
    schedule = dict(save_strategy="steps", save_steps=1, steps_per_generation=2, per_device_train_batch_size=4,
                    max_steps=4)
    full = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path / "full", selector=full, **schedule)
    trainer.train()
    checkpoint = tmp_path / "full" / "checkpoint-1"  # after the first of the generation's two optimizer steps
    done = load_state(checkpoint / CHECKPOINT_FILE)["loop"]["step"]

    resumed = RecordingMoPPS(seed=0)
    rolled_out: list[int] = []
    again = make_trainer(tmp_path / "resumed", reward_funcs=prompt_log_reward(rolled_out), selector=resumed,
                         **schedule)
    again.train(resume_from_checkpoint=str(checkpoint))
    trained_ids = [DATASET[position]["prompt_id"] for position in trainer.trained[0]["positions"]]
    # TRL keeps no completions in a checkpoint: the trained prompts are generated again, once, with no
    # refill and no evidence (their evidence was learned before the checkpoint) ...
    assert rolled_out[:8] == [prompt for prompt in trained_ids for _ in range(GENERATIONS)]
    assert len(again.trained) == 1  # the one later generation; the regenerated one was not refilled
    assert len(rolled_out) == 8 + 8 * len(resumed.choices)
    # ... and the next generation's first choice depends on saved state only.
    assert resumed.choices[0] == full.choices[done]
    assert again.loop.step == done + len(resumed.choices)


@pytest.mark.slow
def test_fill_groups_teach_nothing_even_when_a_shaped_reward_varies_within_them(tmp_path):
    # Found in review: groups are kept on the judged reward, but TRL's advantage is over the weighted
    # sum of every reward function, so a filler group with a varying shaped reward had |advantage| 1.3.
    def never_solved(completions, **kwargs) -> list[float]:
        return [0.0] * len(completions)

    def length_bonus(completions, **kwargs) -> list[float]:
        return [0.1 * len(completion.split()) for completion in completions]

    trainer = make_trainer(tmp_path, reward_funcs=[never_solved, length_bonus], max_num_gen_batches=2, max_steps=1,
                           success_reward="never_solved")
    trainer.train()
    [batch] = trainer.trained
    assert logged(trainer, "mopps/kept_groups") == [0.0] and logged(trainer, "rewards/length_bonus/std")[0] > 0
    assert np.abs(batch["advantages"]).max() == 0.0


@pytest.mark.slow
def test_kept_groups_keep_trls_advantages_next_to_fillers(tmp_path):
    # At a cap of 1 round: the kept even-id groups keep TRL's advantages (+-0.87 for 1, 0, 1, 0), the odd-id
    # fillers get 0.
    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, reward_funcs=alternating_for_even_ids, selector=selector, max_num_gen_batches=1,
                           max_steps=6, id_column="prompt_id")
    trainer.train()
    for choice, batch in zip(selector.choices, trainer.trained, strict=True):
        trained_ids = [DATASET[position]["prompt_id"] for position in batch["positions"]]
        kept = [prompt for prompt in choice if prompt % 2 == 0]
        assert trained_ids[:len(kept)] == kept
        advantages = np.abs(np.asarray(batch["advantages"]).reshape(-1, GENERATIONS))
        assert (advantages[:len(kept)] > 0.8).all() and (advantages[len(kept):] == 0).all()
    assert any(len({p % 2 for p in choice}) == 2 for choice in selector.choices), "no step mixed kept and filler"


@pytest.mark.slow
def test_contextual_mopps_with_features_guides_the_refills(tmp_path):
    trainer = make_trainer(tmp_path, selector_class="mopps.ContextualMoPPS", features_column="features", max_steps=3)
    trainer.train()
    assert type(trainer.selector).__name__ == "ContextualMoPPS"
    assert trainer.selector.step == trainer.loop.step == sum(logged(trainer, "mopps/generation_batches")) > 3
    for batch in trainer.trained:
        outcomes = rescored(batch)
        assert ((outcomes.min(axis=1) == 0) & (outcomes.max(axis=1) == 1)).all()


@pytest.mark.slow
def test_wider_rounds_roll_out_more_prompts_and_still_train_b_groups(tmp_path):
    selector = RecordingMoPPS(seed=0)
    scored: list[int] = []
    trainer = make_trainer(tmp_path, reward_funcs=prompt_log_reward(scored), selector=selector,
                           dynamic_sampling_round_prompts=5, max_steps=3)
    trainer.train()
    assert {len(choice) for choice in selector.choices} == {5}  # every round: 5 prompts x 4 rollouts
    assert len(scored) == trainer.loop.rollouts == 20 * len(selector.choices)
    for batch in trainer.trained:
        assert len(batch["positions"]) == 2
        outcomes = rescored(batch)
        assert ((outcomes.min(axis=1) == 0) & (outcomes.max(axis=1) == 1)).all()


@pytest.mark.parametrize("round_prompts, match", [(1, "between B = 2 and the 24 prompts"),
                                                  (25, "between B = 2 and the 24 prompts"),
                                                  (0, "dynamic_sampling_round_prompts")])
def test_a_round_size_that_cannot_work_names_the_field(tmp_path, round_prompts, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, dynamic_sampling_round_prompts=round_prompts)
