"""MoPPSGRPOTrainer end to end on CPU: a tiny random Qwen2 trains a few GRPO steps on "a + b =" prompts.

No Hub access (tokenizer and model are built locally, see ``_tiny_trl``). The 2-process run is in
``test_trl_distributed.py``.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402

from _tiny_trl import (  # noqa: E402
    RecordingMoPPS,
    addition_dataset,
    contains_answer,
    prompt_log_reward,
    tiny_grpo_config,
    tiny_model,
    tiny_tokenizer,
)

from mopps import Uniform  # noqa: E402
from mopps.core.metrics import SELECTION_REPORT_KEYS  # noqa: E402
from mopps.integrations.trl import (  # noqa: E402
    ADAPTER_FILE,
    SELECTOR_FILE,
    CandidateStream,
    MoPPSConfig,
    MoPPSGRPOTrainer,
)

TOKENIZER = tiny_tokenizer()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: one thread is faster than two fighting over a shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_trainer(output_dir, reward_funcs=contains_answer, selector=None, mopps=None, **config):
    return MoPPSGRPOTrainer(
        model=tiny_model(TOKENIZER), reward_funcs=reward_funcs, args=tiny_grpo_config(output_dir, **config),
        train_dataset=addition_dataset(), eval_dataset=addition_dataset(8), processing_class=TOKENIZER,
        selector=selector, mopps=mopps or MoPPSConfig(ts_ratio=3, id_column="prompt_id"),
    )


def evidence_total(selector) -> float:
    """Rollouts the posterior has absorbed: sum of (alpha + beta) minus the prior, over all prompts
    (exact with discount 1 and the Beta(1, 1) prior)."""
    arrays = selector.state_dict()["arrays"]
    return float(np.sum(arrays["alpha"] + arrays["beta"]) - 2.0 * len(arrays["ids"]))


def logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


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
    assert trainer.rollouts_scored == scored
    assert evidence_total(selector) == pytest.approx(scored)
    assert selector.step == 4
    # Candidates come from the ts_ratio-times larger pool and the chosen ids are real prompt ids.
    assert logged(trainer, "mopps/candidates") == [6.0] * 4
    assert set(p for choice in selector.choices for p in choice) <= set(range(100, 124))


def test_metrics_reach_trl_logs_and_agree_with_trl(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train()
    for key in ("mopps/spearman", "mopps/zero_variance_frac", "mopps/predicted_mean", "mopps/success_rate_mean",
                "mopps/solve_none_frac", "mopps/lag"):
        assert len(logged(trainer, key)) == 4, key
    # Exactly the shared report's names (the same as verl's) plus TRL's own lag and candidates.
    logged_names = {key for entry in trainer.state.log_history for key in entry if key.startswith("mopps/")}
    assert logged_names == {f"mopps/{name}" for name in SELECTION_REPORT_KEYS} | {"mopps/lag", "mopps/candidates"}
    # With a 0/1 reward, the selector's success rate is TRL's mean reward and its zero-variance
    # fraction is TRL's frac_reward_zero_std.
    assert logged(trainer, "mopps/success_rate_mean") == pytest.approx(logged(trainer, "reward"))
    assert logged(trainer, "mopps/zero_variance_frac") == pytest.approx(logged(trainer, "frac_reward_zero_std"))
    assert logged(trainer, "mopps/predicted_mean")[0] == pytest.approx(0.5)  # Beta(1, 1) before any evidence


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
    assert trainer.rollouts_scored == trainer.args.generation_batch_size * len(selector.steps)


def test_evaluate_leaves_selector_untouched(tmp_path):
    eval_prompts: list[int] = []
    trainer = make_trainer(tmp_path, reward_funcs=prompt_log_reward(eval_prompts), max_steps=2)
    trainer.train()
    before = trainer.selector.state_dict()
    scored_before = trainer.rollouts_scored
    eval_prompts.clear()
    trainer.evaluate()
    assert eval_prompts, "the reward function must have run during evaluation for this test to mean anything"
    after = trainer.selector.state_dict()
    assert after["step"] == before["step"] and after["rng"] == before["rng"]
    for name, values in before["arrays"].items():
        np.testing.assert_array_equal(after["arrays"][name], values)
    assert trainer.rollouts_scored == scored_before


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
    assert (checkpoint / SELECTOR_FILE).is_file() and (checkpoint / ADAPTER_FILE).is_file()
    done = json.loads((checkpoint / ADAPTER_FILE).read_text())["generations_selected"]

    resumed = RecordingMoPPS(seed=0)
    rolled_out: list[int] = []
    trainer_resumed = make_trainer(tmp_path / "resumed", reward_funcs=prompt_log_reward(rolled_out),
                                   selector=resumed, save_strategy="steps", **schedule)
    trainer_resumed.train(resume_from_checkpoint=str(checkpoint))

    assert resumed.step == full.step  # every generation counted once, none twice
    assert trainer_resumed.rollouts_scored == trainer.rollouts_scored
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


def test_resume_needs_a_mopps_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=1, max_steps=1)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-1"
    (checkpoint / SELECTOR_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=SELECTOR_FILE):
        make_trainer(tmp_path / "again", save_strategy="steps", save_steps=1, max_steps=2).train(
            resume_from_checkpoint=str(checkpoint))


def test_uniform_selector_plugs_in(tmp_path):
    trainer = make_trainer(tmp_path, selector=Uniform(seed=1), max_steps=2)
    trainer.train()
    assert evidence_total(trainer.selector) == pytest.approx(trainer.rollouts_scored) and trainer.rollouts_scored == 16


def test_prior_file_seeds_posteriors(tmp_path):
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"100": [1, 1, 1, 0], "101": [0, 0, 0, 0]}))
    trainer = make_trainer(tmp_path, mopps=MoPPSConfig(ts_ratio=3, id_column="prompt_id",
                                                       bandit_init_path=str(prior)))
    np.testing.assert_allclose(trainer.selector.posterior([100, 101]), ([10.0, 1.0], [4.0, 13.0]))


def test_success_reward_selects_one_reward_function(tmp_path):
    def format_bonus(completions, **kwargs):
        return [0.5] * len(completions)

    trainer = make_trainer(tmp_path, reward_funcs=[contains_answer, format_bonus], max_steps=2,
                           mopps=MoPPSConfig(ts_ratio=3, success_reward="contains_answer"))
    trainer.train()
    # Judged on contains_answer alone; the total reward (>= 0.5 per rollout) would never reach 1.0
    # without it, so the success mean equals contains_answer's mean.
    assert logged(trainer, "mopps/success_rate_mean") == pytest.approx(logged(trainer, "rewards/contains_answer/mean"))


@pytest.mark.parametrize(
    "mopps, match",
    [
        (dict(ts_ratio=0.5), "ts_ratio"),
        (dict(success_rule="acc"), "success_rule"),
        (dict(success_reward="accuracy"), "success_reward"),
        (dict(id_column="answer"), "prompt ids must be unique"),
        (dict(id_column="missing"), "id_column"),
        (dict(bandit_sample_strategy="best"), "strategy"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, mopps, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, mopps=MoPPSConfig(**mopps))


def test_iterable_dataset_is_refused(tmp_path):
    with pytest.raises(TypeError, match="map-style"):
        MoPPSGRPOTrainer(model=tiny_model(TOKENIZER), reward_funcs=contains_answer,
                         args=tiny_grpo_config(tmp_path), train_dataset=addition_dataset().to_iterable_dataset(),
                         processing_class=TOKENIZER)


def test_candidate_stream_draws_without_replacement_and_resumes():
    stream = CandidateStream(num_rows=10, size=4, seed=3)
    first, second = stream.next(), stream.next()
    assert len(set(first.tolist()) | set(second.tolist())) == 8  # distinct within an epoch
    state = stream.state_dict()
    third = stream.next()  # only 2 rows left: they are skipped and epoch 1 starts
    assert stream.epoch == 1 and len(set(third.tolist())) == 4
    restored = CandidateStream(num_rows=10, size=4, seed=3)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.next(), third)
    with pytest.raises(ValueError, match="num_rows"):
        CandidateStream(num_rows=11, size=4, seed=3).load_state_dict(state)
    # A resume with another batch layout changes the candidate count: say which settings decide it.
    with pytest.raises(ValueError, match="size = 4 but this run has size = 5.*generation_batch_size"):
        CandidateStream(num_rows=10, size=5, seed=3).load_state_dict(state)


def test_prior_file_keys_must_match_the_id_kind(tmp_path):
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({"q-100": [1, 0]}))
    with pytest.raises(ValueError, match="q-100"):
        make_trainer(tmp_path, mopps=MoPPSConfig(id_column="prompt_id", bandit_init_path=str(prior)))


@pytest.mark.parametrize("keys", [["5000", "5001"], []], ids=["other-ids", "empty"])
def test_prior_file_that_matches_no_prompt_is_refused(tmp_path, keys):
    # Keyed by ids the dataset does not carry, the prior would seed nothing and the run start flat.
    prior = tmp_path / "index_score.json"
    prior.write_text(json.dumps({key: [1, 0] for key in keys}))
    with pytest.raises(ValueError, match="bandit_init_path.*none of its"):
        make_trainer(tmp_path, mopps=MoPPSConfig(id_column="prompt_id", bandit_init_path=str(prior)))


def test_countdown_example_runs_tiny_on_cpu(tmp_path, monkeypatch):
    pytest.importorskip("mopps.tasks.countdown")
    example = Path(__file__).resolve().parents[2] / "examples" / "trl_grpo_countdown.py"
    monkeypatch.setattr(sys, "argv", [str(example), "--tiny", "--max-steps", "2", "--output-dir", str(tmp_path)])
    runpy.run_path(str(example), run_name="__main__")
    assert (tmp_path / "model.safetensors").is_file()
