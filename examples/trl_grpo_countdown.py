"""GRPO on Countdown with MoPPS prompt selection, in TRL (one GPU).

The paper's Countdown setting (Qwen2.5-3B base, 2,000 Countdown-3to4 training prompts, n = 8
rollouts at temperature 1.0, lr 1e-6, clip 0.2 / 0.28, token-mean loss, weight decay 0.1, max
prompt / response 256 / 1024, MoPPS with ts_ratio 8 and decay 0.5) scaled from 256 to 32 prompts per
generation so that one 80 GB GPU holds it. Each generation (32 x 8 = 256 rollouts) is trained in 4
optimizer steps of 64 rollouts, the paper's 4 mini-batches per batch.

    # MoPPS (about a day on one H100 without vLLM; add --vllm to generate with vLLM colocated)
    python examples/trl_grpo_countdown.py --output-dir runs/countdown-mopps
    # the Uniform baseline: same candidates, same steps, random choice (the reference's framework 0;
    # the posteriors still learn, so mopps/spearman shows what MoPPS would have predicted)
    python examples/trl_grpo_countdown.py --selector uniform --output-dir runs/countdown-uniform
    # resume after an interruption (selector state comes back with the checkpoint)
    python examples/trl_grpo_countdown.py --output-dir runs/countdown-mopps --resume

    # dynamic sampling (DAPO) with MoPPS choosing every refill; --selector uniform gives plain DAPO
    python examples/trl_grpo_countdown.py --dynamic-sampling 10 --output-dir runs/countdown-mopps-ds
    # rollout allocation: pilot half of each group, replace prompts whose pilot says the rest is wasted
    # (ours; or pilot_commit, speed_rl, reinforce_ada); groups of 16 = 2 TRL groups of num_generations 8
    python examples/trl_grpo_countdown.py --allocation mopps_pilot --output-dir runs/countdown-mopps-pilot

    # CPU run, offline, about a minute: Countdown is out of reach for a model small enough for a CPU
    # (every reward would be 0, so nothing to select), so --tiny trains mopps.testbed.hf_tiny's Qwen2,
    # warm-started on 2-digit addition (built once into the mopps cache, ~20 s), whose groups are mixed
    python examples/trl_grpo_countdown.py --tiny --output-dir /tmp/tiny
    python examples/trl_grpo_countdown.py --tiny --dynamic-sampling 8 --output-dir /tmp/tiny-ds
    python examples/trl_grpo_countdown.py --tiny --allocation mopps_pilot --output-dir /tmp/tiny-pilot

Instances come from ``mopps.tasks.prepare.prepare_countdown`` (generated, solvable by construction,
same ranges as ``Jiayi-Pan/Countdown-Tasks-3to4``, the reference's prompt wording); the reward is the
reference's 1 / 0.1 / 0 score from ``mopps.tasks.countdown_reward``. A rollout counts as a success
for the selector when its reward is 1.0 (a correct equation), the reference's ``acc >= 1``. Watch
``mopps/zero_variance_frac`` fall and ``mopps/spearman`` rise in the logs; with dynamic sampling,
``mopps/generation_batches`` (rounds per generation) and ``mopps/generated_rollouts`` against
``mopps/trained_rollouts`` show what the refills cost.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from datasets import Dataset

from mopps.integrations.trl import MoPPSGRPOConfig, MoPPSGRPOTrainer
from mopps.testbed import hf_tiny
from mopps.tasks import countdown_reward
from mopps.tasks.formats import trl_rows
from mopps.tasks.prepare import prepare_countdown


def countdown_datasets(train_size: int, test_size: int, seed: int) -> tuple[Dataset, Dataset]:
    """Train and test sets as ``mopps data countdown`` writes them for TRL: ``prompt`` (the reference's
    base-model text, plain so no chat template wraps it), ``target`` and ``numbers`` (what
    ``countdown_reward`` reads), ``prompt_id`` (content hash, the id the verl files carry too)."""
    splits = prepare_countdown(train_size=train_size, test_size=test_size, seed=seed, progress=False)
    return tuple(Dataset.from_list(trl_rows(splits[name][1])) for name in ("train", "test"))


def training_config(args: argparse.Namespace) -> MoPPSGRPOConfig:
    common = dict(
        output_dir=args.output_dir, num_generations=8, temperature=1.0, learning_rate=1e-6, weight_decay=0.1,
        epsilon=0.2, epsilon_high=0.28, loss_type="dapo", beta=0.0, logging_steps=1, save_strategy="steps",
        seed=args.seed, report_to=args.report_to,
        # Prompt selection (the paper's Countdown settings); the seed above seeds it too.
        ts_ratio=8, bandit_decay_ratio=0.5, bandit_target_mean=0.5, success_rule="threshold",
        success_threshold=1.0, id_column="prompt_id",
        bandit_sample_strategy="uniform" if args.selector == "uniform" else "topk",
        # Dynamic sampling: up to this many generation rounds, each chosen by the selector (0 = off).
        max_num_gen_batches=args.dynamic_sampling, dynamic_sampling_at_cap=args.at_cap,
        # Rollout allocation (None = off): a trained group is rollout_allocation_group_size rollouts
        # (default: num_generations / the rule's pilot share, e.g. 2 x num_generations for mopps_pilot).
        rollout_allocation=args.allocation,
    )
    if args.tiny:
        # 4 prompts x 4 rollouts per generation, 2 optimizer steps per generation; the checkpoint at
        # step 4 falls on a generation boundary. A small learning rate keeps the warm start's skills.
        common.update(num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                      steps_per_generation=2, max_completion_length=hf_tiny.TinyConfig().task.answer_length + 1,
                      max_steps=args.max_steps or 20, save_steps=4, learning_rate=3e-4, use_cpu=True,
                      eval_strategy="steps", eval_steps=4, per_device_eval_batch_size=16, dataloader_num_workers=0,
                      ts_ratio=4)
    else:
        # 32 prompts x 8 rollouts = 256 per generation; 4 optimizer steps of 16 x 4 = 64 rollouts each.
        # save_steps is a multiple of 4, so every checkpoint falls on a generation boundary and a
        # resumed run makes exactly the uninterrupted run's choices.
        common.update(per_device_train_batch_size=16, gradient_accumulation_steps=4, steps_per_generation=16,
                      max_completion_length=1024, max_steps=args.max_steps or 1000, save_steps=100,
                      bf16=True, gradient_checkpointing=True, eval_strategy="steps", eval_steps=100,
                      per_device_eval_batch_size=64, use_vllm=args.vllm, vllm_mode="colocate")
    return MoPPSGRPOConfig(**common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-3B", help="Hub id or path of the base model")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--selector", choices=["mopps", "uniform"], default="mopps")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default 1000; --tiny: 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM in colocate mode")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    parser.add_argument("--report-to", nargs="*", default=[], help="TRL logging backends, e.g. wandb")
    parser.add_argument("--dynamic-sampling", type=int, default=0, metavar="N",
                        help="DAPO dynamic sampling with up to N generation rounds per step, each chosen by the "
                             "selector (max_num_gen_batches; the paper's Countdown cap is 10); 0 = off")
    parser.add_argument("--at-cap", choices=["fill", "repeat", "raise"], default="fill",
                        help="what is trained when N rounds kept too few informative groups (see docs/trl.md)")
    parser.add_argument("--allocation", default=None, choices=["mopps_pilot", "pilot_commit", "speed_rl", "reinforce_ada"],
                        help="rollout allocation per step (rollout_allocation; docs/allocation.md); default off")
    parser.add_argument("--tiny", action="store_true",
                        help="CPU run, offline: a tiny Qwen2 warm-started on 2-digit addition (mixed rewards)")
    args = parser.parse_args()

    if args.tiny:
        os.environ["HF_HUB_OFFLINE"] = "1"
        problems = hf_tiny.build_dataset(80, seed=args.seed)  # 80 distinct prompts: 64 to train on, 16 held out
        train, test = problems.select(range(64)), problems.select(range(64, 80))
        model, tokenizer = hf_tiny.load_tiny_policy()
        reward = hf_tiny.exact_answer_reward
    else:
        train, test = countdown_datasets(2000, 512, seed=args.seed)
        model, tokenizer, reward = args.model, None, countdown_reward

    trainer = MoPPSGRPOTrainer(
        model=model, reward_funcs=reward, args=training_config(args), train_dataset=train,
        eval_dataset=test, processing_class=tokenizer,
    )
    resume = args.resume and any(path.name.startswith("checkpoint-") for path in Path(args.output_dir).glob("*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_model()


if __name__ == "__main__":
    main()
