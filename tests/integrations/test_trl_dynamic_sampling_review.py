"""Review of issue 13 (dynamic sampling in MoPPSGRPOTrainer): claims that do not hold.

``docs/trl.md`` and the ``dynamic_sampling_at_cap`` help say the groups ``fill`` tops the batch up
with have "zero reward variance, so zero GRPO advantage: the policy gradient is that of the kept
groups". Groups are kept on the *success* reward, but TRL's advantage is computed on the weighted
sum of *all* reward functions, so with a second (shaped) reward the filler groups carry non-zero
advantages. Either the filler groups' advantages are zeroed, or the docs/help and the name of
``mopps/trained_zero_variance_frac`` say "zero success variance" and drop the gradient claim.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402

from _tiny_trl import TrainedBatches, addition_dataset, tiny_grpo_config, tiny_model, tiny_tokenizer  # noqa: E402

TOKENIZER = tiny_tokenizer()


def never_solved(completions, **kwargs) -> list[float]:
    return [0.0] * len(completions)


def length_bonus(completions, **kwargs) -> list[float]:
    """A shaped reward that varies within a group: 0.1 per completion word."""
    return [0.1 * len(completion.split()) for completion in completions]


def test_fill_groups_carry_no_advantage_when_a_shaped_reward_is_added(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = TrainedBatches(model=tiny_model(TOKENIZER), reward_funcs=[never_solved, length_bonus],
                                 args=tiny_grpo_config(tmp_path, max_num_gen_batches=2, max_steps=1,
                                                       success_reward="never_solved"),
                                 train_dataset=addition_dataset(), processing_class=TOKENIZER)
        trainer.train()
    finally:
        torch.set_num_threads(threads)
    [batch] = trainer.trained
    assert [entry["mopps/kept_groups"] for entry in trainer.state.log_history if "mopps/kept_groups" in entry] == [0.0]
    # Every trained group is a filler group (nothing was kept), so by the documented claim all are 0.
    assert np.abs(np.asarray(batch["advantages"])).max() == 0.0
