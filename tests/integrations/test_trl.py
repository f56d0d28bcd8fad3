"""MoPPSGRPOTrainer end to end on CPU: a tiny random Qwen2 trains a few GRPO steps on "a + b =" prompts.

No Hub access (tokenizer and model are built locally, see ``_tiny_trl``). The 2-process run is in
``test_trl_distributed.py``.
"""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")

from trl import GRPOConfig  # noqa: E402

from _tiny_trl import (  # noqa: E402
    RecordingMoPPS,
    addition_dataset,
    contains_answer,
    logged,
    prompt_log_reward,
    tiny_grpo_config,
    tiny_model,
    tiny_tokenizer,
    tiny_trl_settings,
)

from mopps import Uniform  # noqa: E402
from mopps.core.metrics import GROUP_KEYS, PREDICTION_KEYS  # noqa: E402
from mopps.integrations.trl import CHECKPOINT_FILE, MoPPSConfig, MoPPSGRPOTrainer  # noqa: E402
from mopps.storage import load_state, save_state  # noqa: E402

TOKENIZER = tiny_tokenizer()
SELECTOR_V1 = Path(__file__).resolve().parents[1] / "selectors" / "data" / "mopps_v1.npz"



def make_trainer(output_dir, reward_funcs=contains_answer, selector=None, dataset=None, **config):
    """The tiny trainer; ``config``: any MoPPSGRPOConfig field (TRL's or the selection fields)."""
    return MoPPSGRPOTrainer(
        model=tiny_model(TOKENIZER), reward_funcs=reward_funcs, args=tiny_grpo_config(output_dir, **config),
        train_dataset=dataset if dataset is not None else addition_dataset(), eval_dataset=addition_dataset(8),
        processing_class=TOKENIZER, selector=selector,
    )


def assert_same_state(first, second, where="state"):
    """Two nested state dicts (arrays, lists, JSON scalars) hold the same values."""
    assert type(first) is type(second) or isinstance(first, np.ndarray), where
    if isinstance(first, dict):
        assert first.keys() == second.keys(), where
        for key in first:
            assert_same_state(first[key], second[key], f"{where}/{key}")
    elif isinstance(first, np.ndarray):
        np.testing.assert_array_equal(second, first, err_msg=where)
    else:
        assert first == second, where


def evidence_total(selector) -> float:
    """Rollouts the posterior has absorbed: sum of (alpha + beta) minus the prior, over all prompts
    (exact with discount 1 and the Beta(1, 1) prior)."""
    arrays = selector.state_dict()["arrays"]
    return float(np.sum(arrays["alpha"] + arrays["beta"]) - 2.0 * len(arrays["ids"]))


@pytest.mark.slow
def test_posterior_evidence_equals_scored_rollouts_and_batches_are_the_chosen_prompts(tmp_path):
    seen_prompt_ids: list[int] = []
    scored = 0
    unscorable = {"9"}  # the reward returns None for these answers: such rollouts are not evidence

    def reward(completions, answer, prompt_id, **kwargs):
        nonlocal scored
        seen_prompt_ids.extend(prompt_id)
        scored += sum(expected not in unscorable for expected in answer)
        return [None if expected in unscorable else value
                for value, expected in zip(contains_answer(completions, answer), answer)]

    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, reward_funcs=reward, selector=selector)
    trainer.train()

    assert len(selector.choices) == 4 and all(len(choice) == 2 for choice in selector.choices)
    # TRL rolled out exactly the chosen prompts, each num_generations times in a row.
    assert seen_prompt_ids == [prompt for choice in selector.choices for prompt in choice for _ in range(4)]
    assert 0 < scored < len(seen_prompt_ids), "the dataset must contain unscorable prompts for this test"
    assert trainer.loop.rollouts == scored
    assert trainer.loop.rollouts_without_verdict == len(seen_prompt_ids) - scored
    assert evidence_total(selector) == pytest.approx(scored)
    # A generation none of whose rollouts has a verdict teaches the selector nothing.
    answer_of = dict(zip(addition_dataset()["prompt_id"], addition_dataset()["answer"]))
    assert selector.step == sum(any(answer_of[prompt] not in unscorable for prompt in choice)
                                for choice in selector.choices)
    # Candidates come from the ts_ratio-times larger pool and the chosen ids are real prompt ids.
    assert logged(trainer, "mopps/candidates") == [6.0] * 4
    assert set(p for choice in selector.choices for p in choice) <= set(range(100, 124))


@pytest.mark.slow
def test_metrics_reach_trl_logs_and_agree_with_trl(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train()
    for key in ("mopps/spearman", "mopps/zero_variance_frac", "mopps/predicted_mean", "mopps/success_rate_mean",
                "mopps/solve_none_frac", "mopps/lag"):
        assert len(logged(trainer, key)) == 4, key
    # Exactly the loop's names (docs/loop.md), the same on every host.
    logged_names = {key for entry in trainer.state.log_history for key in entry if key.startswith("mopps/")}
    loop_names = {"observed_groups", "rollouts", "rollouts_without_verdict", "unpredicted_groups", "open_predictions",
                  "cumulative_rollouts", "lag", "candidates", "selected", *GROUP_KEYS, *PREDICTION_KEYS}
    assert logged_names == {f"mopps/{name}" for name in loop_names}
    assert set(logged(trainer, "mopps/open_predictions")) == {0.0}  # every choice settled before the next
    # With a 0/1 reward, the selector's success rate is TRL's mean reward and its zero-variance
    # fraction is TRL's frac_reward_zero_std.
    assert logged(trainer, "mopps/success_rate_mean") == pytest.approx(logged(trainer, "reward"))
    assert logged(trainer, "mopps/zero_variance_frac") == pytest.approx(logged(trainer, "frac_reward_zero_std"))
    assert logged(trainer, "mopps/predicted_mean")[0] == pytest.approx(0.5)  # Beta(1, 1) before any evidence


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule",
    [
        dict(),  # TRL defaults: steps_per_generation = gradient_accumulation_steps = 1
        dict(per_device_train_batch_size=4, gradient_accumulation_steps=2),  # a sampler lags one generation
        dict(per_device_train_batch_size=2, gradient_accumulation_steps=4, steps_per_generation=2),  # lags two
        dict(per_device_train_batch_size=4, steps_per_generation=2),
        dict(num_iterations=2),
    ],
    ids=["default", "ga2", "ga4-spg2", "ga1-spg2", "iterations2"],
)
def test_every_choice_sees_all_earlier_rewards(tmp_path, schedule):
    """The lag test: when generation k is chosen, the rewards of generations 0..k-1 are in the posterior."""
    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, selector=selector, **schedule)
    trainer.train()
    assert len(selector.steps) >= 2
    assert selector.steps == list(range(len(selector.steps)))
    assert set(logged(trainer, "mopps/lag")) == {0.0}
    assert trainer.loop.rollouts == trainer.args.generation_batch_size * len(selector.steps)
    # One tick per optimiser step, however many generations (or micro-steps) it spans.
    assert trainer.loop.tick == trainer.selector.tick == trainer.state.global_step > 0


@pytest.mark.slow
def test_evaluate_leaves_selector_untouched(tmp_path):
    eval_prompts: list[int] = []
    trainer = make_trainer(tmp_path, reward_funcs=prompt_log_reward(eval_prompts), max_steps=2)
    trainer.train()
    before = trainer.loop.state_dict()
    eval_prompts.clear()
    trainer.evaluate()
    assert eval_prompts, "the reward function must have run during evaluation for this test to mean anything"
    assert_same_state(before, trainer.loop.state_dict())  # selector, stream, ledger, counters


@pytest.mark.slow
@pytest.mark.parametrize(
    "schedule, same_trajectory",
    [(dict(save_steps=2), True),
     (dict(save_steps=1, steps_per_generation=2, per_device_train_batch_size=4, max_steps=6), False)],
    ids=["at-generation-boundary", "mid-generation"],
)
def test_resume_reproduces_uninterrupted_choices(tmp_path, schedule, same_trajectory):
    full = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path / "full", selector=full, save_strategy="steps", **schedule)
    trainer.train()
    checkpoint = tmp_path / "full" / f"checkpoint-{schedule['save_steps']}"
    assert sorted(path.name for path in checkpoint.glob("mopps*")) == [CHECKPOINT_FILE]
    done = load_state(checkpoint / CHECKPOINT_FILE)["loop"]["step"]

    resumed = RecordingMoPPS(seed=0)
    rolled_out: list[int] = []
    trainer_resumed = make_trainer(tmp_path / "resumed", reward_funcs=prompt_log_reward(rolled_out),
                                   selector=resumed, save_strategy="steps", **schedule)
    trainer_resumed.train(resume_from_checkpoint=str(checkpoint))

    assert resumed.step == full.step  # every generation counted once, none twice
    assert trainer_resumed.loop.rollouts == trainer.loop.rollouts
    if same_trajectory:
        assert resumed.choices == full.choices[done:]
        for name, values in full.state_dict()["arrays"].items():
            np.testing.assert_array_equal(resumed.state_dict()["arrays"][name], values)
    else:
        # TRL does not checkpoint its buffer of completions: resumed mid-generation it regenerates
        # completions for the same prompts (reused from the checkpoint, not re-chosen), so the model,
        # and with it later rewards, may drift. The next choice depends on saved state only.
        assert rolled_out[:8] == [prompt for prompt in full.choices[done - 1] for _ in range(4)]
        assert resumed.choices[0] == full.choices[done]
        assert resumed.steps[0] == full.steps[done]


@pytest.fixture(scope="module")
def one_step_checkpoint(tmp_path_factory):
    """A checkpoint after one generation (ts_ratio 3, prompt_id ids, seed 0); copy before changing it."""
    folder = tmp_path_factory.mktemp("one-step")
    make_trainer(folder, save_strategy="steps", save_steps=1, max_steps=1).train()
    return folder / "checkpoint-1"


def copy_of(checkpoint, destination):
    shutil.copytree(checkpoint, destination)
    return destination


@pytest.mark.slow
def test_resume_needs_a_mopps_checkpoint(tmp_path, one_step_checkpoint):
    checkpoint = copy_of(one_step_checkpoint, tmp_path / "checkpoint-1")
    (checkpoint / CHECKPOINT_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_FILE):
        make_trainer(tmp_path / "again", max_steps=2).train(resume_from_checkpoint=str(checkpoint))


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, match",
    [(dict(ts_ratio=2), "ts_ratio"), (dict(seed=1), "seed"), (dict(id_column=None), "prompt_ids_sha1"),
     (dict(bandit_no_update=True), "learn"), (dict(bandit_decay_ratio=0.5), "config")],
)
def test_resume_with_another_dataset_or_config_is_refused(tmp_path, one_step_checkpoint, change, match):
    trainer = make_trainer(tmp_path / "again", max_steps=2, **change)
    before = trainer.loop.state_dict()
    with pytest.raises(ValueError, match=match):
        trainer.train(resume_from_checkpoint=str(one_step_checkpoint))
    assert_same_state(before, trainer.loop.state_dict())


@pytest.mark.parametrize("damage, match", [
    (lambda state: state.pop("micro_step"), "lacks \\['micro_step'\\]"),
    (lambda state: state.update(generation_positions=np.array([3, 24])), "generation_positions \\[3, 24\\]"),
    (lambda state: state.update(version=1), "TRL checkpoint version 1 is not supported"),
    (lambda state: state["loop"]["stream"].update(offset=99), "stream offset = 99"),
])
@pytest.mark.slow
def test_a_damaged_checkpoint_is_refused_and_the_loop_kept(tmp_path, one_step_checkpoint, damage, match):
    checkpoint = copy_of(one_step_checkpoint, tmp_path / "checkpoint-1")
    state = load_state(checkpoint / CHECKPOINT_FILE)
    damage(state)
    save_state(state, checkpoint / CHECKPOINT_FILE)
    trainer = make_trainer(tmp_path / "again", max_steps=2)
    before = trainer.loop.state_dict()
    with pytest.raises(ValueError, match=match):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert_same_state(before, trainer.loop.state_dict())


@pytest.mark.slow
def test_checkpoint_of_mopps_0_1_is_refused_with_a_way_to_keep_its_posteriors(tmp_path, one_step_checkpoint):
    # mopps 0.1 wrote the selector (file format 1) and a JSON side file; its candidate order came from
    # another generator, so the run cannot be continued exactly, but its posteriors can seed a new one.
    checkpoint = copy_of(one_step_checkpoint, tmp_path / "checkpoint-1")
    (checkpoint / CHECKPOINT_FILE).unlink()
    shutil.copy(SELECTOR_V1, checkpoint / "mopps_selector.npz")
    (checkpoint / "mopps_trainer_state.json").write_text(json.dumps({
        "format": "mopps.trl-adapter-state", "version": 1, "generations_selected": 1, "rollouts_scored": 8,
        "micro_step": 1, "chosen_positions": [3, 7],
        "candidates": {"num_rows": 24, "size": 6, "seed": 0, "epoch": 0, "offset": 6}}))
    with pytest.raises(ValueError, match="mopps 0.1.*bandit_load_path=.*mopps_selector.npz"):
        make_trainer(tmp_path / "again", max_steps=2).train(resume_from_checkpoint=str(checkpoint))
    # What the message says works (mopps_v1.npz was saved by MoPPS(prior=(2, 1), discount=0.5)).
    trainer = make_trainer(tmp_path / "new", bandit_load_path=str(checkpoint / "mopps_selector.npz"),
                           prior_alpha=2.0, bandit_decay_ratio=0.5)
    np.testing.assert_array_equal(trainer.selector.posterior([5, 6, 9])[0], [5.0, 9.0, 6.0])


@pytest.mark.slow
def test_uniform_selector_plugs_in(tmp_path):
    trainer = make_trainer(tmp_path, selector=Uniform(seed=1), max_steps=2)
    trainer.train()
    assert evidence_total(trainer.selector) == pytest.approx(trainer.loop.rollouts) and trainer.loop.rollouts == 16


def test_prior_file_seeds_posteriors(tmp_path):
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"100": [1, 1, 1, 0], "101": [0, 0, 0, 0]}))
    trainer = make_trainer(tmp_path, bandit_init_path=str(prior))
    np.testing.assert_allclose(trainer.selector.posterior([100, 101]), ([10.0, 1.0], [4.0, 13.0]))


@pytest.mark.slow
def test_success_reward_selects_one_reward_function(tmp_path):
    def format_bonus(completions, **kwargs):
        return [0.5] * len(completions)

    trainer = make_trainer(tmp_path, reward_funcs=[contains_answer, format_bonus], max_steps=2,
                           success_reward="contains_answer", id_column=None)
    trainer.train()
    # Judged on contains_answer alone; the total reward (>= 0.5 per rollout) would never reach 1.0
    # without it, so the success mean equals contains_answer's mean.
    assert logged(trainer, "mopps/success_rate_mean") == pytest.approx(logged(trainer, "rewards/contains_answer/mean"))


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(ts_ratio=0.5), "ts_ratio"),
        (dict(success_rule="acc"), "success_rule"),
        (dict(success_reward="accuracy"), "success_reward"),
        (dict(id_column="answer"), "id_column = 'answer'.*ids must be unique"),
        (dict(id_column="missing"), "id_column"),
        (dict(bandit_sample_strategy="best"), "strategy"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, settings, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, **settings)


@pytest.mark.parametrize("explicit", [dict(bandit_decay_ratio=0.5), dict(prior_alpha=2.0),
                                      dict(bandit_sample_strategy="threshold")])
def test_a_ready_selector_refuses_explicit_selector_settings(tmp_path, explicit):
    # They would configure the MoPPS the settings build, which is not built when selector= is given.
    name = next(iter(explicit))
    with pytest.raises(ValueError, match=f"{name} = .*but a ready selector \\(Uniform\\) is given"):
        make_trainer(tmp_path, selector=Uniform(seed=0), **explicit)


@pytest.mark.slow
def test_a_ready_selector_takes_the_loop_settings(tmp_path):
    # ts_ratio, the success rule and bandit_no_update drive the loop, not the selector's construction.
    trainer = make_trainer(tmp_path, selector=RecordingMoPPS(seed=0), ts_ratio=2, bandit_no_update=True,
                           success_rule="fraction", max_steps=1)
    trainer.train()
    assert logged(trainer, "mopps/candidates") == [4.0]
    assert trainer.selector.updates == [] and trainer.loop.rollouts == 8  # observed, posterior untouched
    assert trainer.loop.config()["rule"]["kind"] == "fraction"


def test_deprecated_mopps_config_still_works(tmp_path):
    with pytest.warns(DeprecationWarning, match="MoPPSConfig is deprecated"):
        old = MoPPSConfig(ts_ratio=2, id_column="prompt_id", seed=5)
    plain = GRPOConfig(**tiny_trl_settings(tmp_path))
    with pytest.warns(DeprecationWarning, match="mopps=.* is deprecated"):
        trainer = MoPPSGRPOTrainer(model=tiny_model(TOKENIZER), reward_funcs=contains_answer, args=plain,
                                   train_dataset=addition_dataset(), processing_class=TOKENIZER, mopps=old)
    assert trainer.loop.config()["ts_ratio"] == 2.0 and trainer.loop.config()["seed"] == 5
    assert trainer.loop.prompt_ids[0] == 100
    with pytest.raises(ValueError, match="mopps= was passed together with a MoPPSGRPOConfig"):
        MoPPSGRPOTrainer(model=tiny_model(TOKENIZER), reward_funcs=contains_answer, args=tiny_grpo_config(tmp_path),
                         train_dataset=addition_dataset(), processing_class=TOKENIZER, mopps=old)


def test_iterable_dataset_is_refused(tmp_path):
    with pytest.raises(TypeError, match="map-style"):
        MoPPSGRPOTrainer(model=tiny_model(TOKENIZER), reward_funcs=contains_answer,
                         args=tiny_grpo_config(tmp_path), train_dataset=addition_dataset().to_iterable_dataset(),
                         processing_class=TOKENIZER)


def test_prior_file_keys_must_match_the_id_kind(tmp_path):
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"q-100": [1, 0]}))
    with pytest.raises(ValueError, match="q-100"):
        make_trainer(tmp_path, bandit_init_path=str(prior))


@pytest.mark.parametrize("keys", [["5000", "5001"], []], ids=["other-ids", "empty"])
def test_prior_file_that_matches_no_prompt_is_refused(tmp_path, keys):
    # Keyed by ids the dataset does not carry, the prior would seed nothing and the run start flat.
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({key: [1, 0] for key in keys}))
    with pytest.raises(ValueError, match="bandit_init_path.*none of its"):
        make_trainer(tmp_path, bandit_init_path=str(prior))


@pytest.mark.slow
@pytest.mark.parametrize("switches", [[], ["--dynamic-sampling", "8", "--selector", "uniform"],
                                      ["--allocation", "mopps_pilot"]], ids=["plain", "ds", "allocation"])
def test_countdown_example_runs_tiny_on_cpu(tmp_path, monkeypatch, switches):
    example = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo_countdown.py"
    monkeypatch.setattr(sys, "argv", [str(example), "--tiny", "--max-steps", "4", "--output-dir", str(tmp_path),
                                      *switches])
    runpy.run_path(str(example), run_name="__main__")
    assert (tmp_path / "model.safetensors").is_file()
    history = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    rewards = [entry["reward"] for entry in history if "reward" in entry]
    assert any(0.0 < reward < 1.0 for reward in rewards)  # the warm start's groups are mixed
    rounds = [entry["mopps/generation_batches"] for entry in history if "mopps/generation_batches" in entry]
    if "--allocation" in switches:
        pilots = [entry["mopps/pilot_rollouts"] for entry in history if "mopps/pilot_rollouts" in entry]
        assert rounds == [] and pilots and min(pilots) >= 2 * 4  # each of 2 prompts piloted with 4 rollouts
        assert {entry["mopps/trained_rollouts"] for entry in history if "mopps/trained_rollouts" in entry} == {16.0}
    elif switches:
        assert rounds and [entry["mopps/trained_zero_variance_frac"] for entry in history
                           if "mopps/trained_zero_variance_frac" in entry] == [0.0] * len(rounds)
    else:
        assert rounds == []


def test_the_evidence_log_records_every_generation_and_resumes_without_repeats(tmp_path):
    from mopps.bench.replay import build_replay_selector, replay
    from mopps.loop import read_evidence_log

    seen: list[int] = []
    full_log = tmp_path / "full.npz"
    trainer = make_trainer(tmp_path / "full", reward_funcs=prompt_log_reward(seen), evidence_log=str(full_log),
                           save_strategy="steps", save_steps=2)
    trainer.train()
    stream = read_evidence_log(full_log)
    assert stream.meta["source"] == "trl" and stream.meta["group_size"] == 4
    np.testing.assert_array_equal(stream.steps(), [1, 2, 3, 4])
    rows = stream.rows()
    assert len(rows["chosen"]) == 4 * 6 and rows["chosen"].sum() == 4 * 2
    # The chosen candidates are the prompts TRL rolled out, each with its num_generations rollouts.
    for step in (1, 2, 3, 4):
        chosen = rows["chosen"] & (rows["step"] == step)
        assert set(rows["prompt_id"][chosen].tolist()) == set(seen[8 * (step - 1):8 * step:4])
    np.testing.assert_array_equal(rows["trials"][rows["chosen"]], 4.0)
    assert replay(stream, build_replay_selector("mopps", 0, 4))["steps"] == 4

    # A run resumed from the step-2 checkpoint into its own copy of the step-2 log writes steps 3-4 once.
    resumed_log = tmp_path / "resumed.npz"
    early = read_evidence_log(tmp_path / "full.npz")
    shutil.copy(full_log, resumed_log)
    resumed = make_trainer(tmp_path / "resumed", evidence_log=str(resumed_log), save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    again = read_evidence_log(resumed_log)
    np.testing.assert_array_equal(np.unique(again.tables["candidates"]["step"], return_counts=True)[1], [6] * 4)
    for column in ("step", "prompt_id", "chosen"):
        np.testing.assert_array_equal(again.tables["candidates"][column], early.tables["candidates"][column])
