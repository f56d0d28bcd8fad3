"""Per-prompt features reach the selector through the loop (``features_column`` / ``features_path``),
and rollouts whose reward has no verdict are not evidence. Tiny CPU runs, see ``_tiny_trl``."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl", reason="the TRL adapter needs the trl extra: pip install -e '.[trl]'")


from _tiny_trl import (  # noqa: E402
    FeatureGreedy,
    addition_dataset,
    contains_answer,
    logged,
    prompt_log_reward,
    RecordingMoPPS,
    tiny_grpo_config,
    tiny_model,
    tiny_tokenizer,
)

import mopps  # noqa: E402
from mopps.features import save_features  # noqa: E402
from mopps.integrations.trl import MoPPSGRPOTrainer  # noqa: E402

TOKENIZER = tiny_tokenizer()
DATASET = addition_dataset()
FEATURES = np.asarray(DATASET["features"], dtype=np.float32)  # (24, 2): a and b of "a + b ="



def make_trainer(output_dir, reward_funcs=contains_answer, selector=None, dataset=DATASET, **config):
    return MoPPSGRPOTrainer(model=tiny_model(TOKENIZER), reward_funcs=reward_funcs,
                            args=tiny_grpo_config(output_dir, **config), train_dataset=dataset,
                            processing_class=TOKENIZER, selector=selector)


@pytest.mark.slow
def test_features_from_a_column_steer_the_prompts_trl_rolls_out(tmp_path):
    selector = FeatureGreedy(seed=0)
    rolled_out: list[int] = []
    trainer = make_trainer(tmp_path, reward_funcs=prompt_log_reward(rolled_out), selector=selector,
                           features_column="features", max_steps=3)
    assert len(selector.received) == 1
    ids, X = selector.received[0]
    assert ids == DATASET["prompt_id"] and X.dtype == np.float32
    np.testing.assert_array_equal(X, FEATURES)
    trainer.train()
    first_feature = dict(zip(DATASET["prompt_id"], FEATURES[:, 0].tolist()))
    for candidates, choice in zip(selector.candidates, selector.choices):
        ranked = sorted(candidates, key=lambda prompt: (-first_feature[prompt], prompt))
        assert choice == ranked[:2]  # the feature decided, not the posterior
    assert rolled_out == [prompt for choice in selector.choices for prompt in choice for _ in range(4)]


def test_features_from_a_file_keyed_by_prompt_id(tmp_path):
    # The file covers the training prompts in another order and one prompt of another split (id 999).
    order = np.arange(24)[::-1]
    path = save_features(tmp_path / "features.npz", np.r_[np.asarray(DATASET["prompt_id"])[order], 999],
                         np.vstack([FEATURES[order] * 10, [[-1.0, -1.0]]]), {"source": "test"})
    selector = FeatureGreedy(seed=0)
    make_trainer(tmp_path, selector=selector, features_path=str(path))
    [(ids, X)] = selector.received
    assert ids == list(reversed(DATASET["prompt_id"]))  # 999 is not a prompt here: left out
    np.testing.assert_array_equal(X, FEATURES[order] * 10)


@pytest.mark.slow
def test_features_go_through_selector_class_from_the_config(tmp_path):
    trainer = make_trainer(tmp_path, selector_class="mopps.ContextualMoPPS", features_column="features",
                           max_steps=2)
    trainer.train()
    assert isinstance(trainer.selector, mopps.ContextualMoPPS) and trainer.loop.rollouts == 16
    assert logged(trainer, "mopps/predicted_mean")


@pytest.mark.parametrize("setting, value, match", [
    ("features_column", "prompt_id", "features_column = 'prompt_id': row 0 holds the single value"),
    ("features_column", "missing", "features_column = 'missing': the training data has no 'missing' column"),
    ("features_column", "ragged", "features_column = 'ragged': row 1 holds 3 numbers but row 0 holds 2"),
    ("features_path", "other-ids", "features_path = .*none of the 2 prompt ids"),
    ("features_path", "missing", "no feature file"),
])
def test_bad_feature_sources_are_refused_naming_the_setting(tmp_path, setting, value, match):
    dataset = DATASET.add_column("ragged", [[1.0, 2.0] if row % 2 == 0 else [1.0, 2.0, 3.0] for row in range(24)])
    if setting == "features_path":
        path = tmp_path / "features.npz"
        if value == "other-ids":
            save_features(path, [5, 6], np.ones((2, 3)), {"source": "test"})
        value = str(path)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        make_trainer(tmp_path, selector=FeatureGreedy(seed=0), dataset=dataset, **{setting: value})


def test_features_for_a_selector_that_takes_none_are_refused(tmp_path):
    with pytest.raises(ValueError, match="features_column = 'features' is set but MoPPS takes no features"):
        make_trainer(tmp_path, features_column="features")


@pytest.mark.slow
def test_a_reward_without_verdict_is_not_evidence(tmp_path):
    # success_reward names the accuracy callable; like mopps.tasks' *_accuracy callables on a grader
    # timeout it returns None (TRL: NaN in rewards_per_func) for every other completion, so each group
    # of 4 rollouts gives 2 trials. The format reward always answers and is not judged.
    def accuracy(completions, answer, **kwargs):
        return [None if index % 2 else value for index, value in enumerate(contains_answer(completions, answer))]

    def format_bonus(completions, **kwargs):
        return [0.1] * len(completions)

    selector = RecordingMoPPS(seed=0)
    trainer = make_trainer(tmp_path, reward_funcs=[accuracy, format_bonus], selector=selector,
                           success_reward="accuracy", max_steps=2)
    trainer.train()
    assert [trials for _, _, trials in selector.updates] == [[2.0, 2.0], [2.0, 2.0]]
    assert trainer.loop.rollouts == 8 and trainer.loop.rollouts_without_verdict == 8
    assert logged(trainer, "mopps/rollouts_without_verdict") == [4.0, 4.0]
    alpha, beta = selector.posterior([prompt for choice in selector.choices for prompt in choice])
    assert float(np.sum(alpha + beta - 2.0)) == 8.0  # Beta(1, 1) prior, discount 1: only the verdicts count
