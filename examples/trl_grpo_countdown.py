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

    # CPU smoke run: a tiny random Qwen2 and a tokenizer built locally, no downloads, well under a minute
    python examples/trl_grpo_countdown.py --tiny --output-dir /tmp/countdown-tiny

Instances come from ``mopps.tasks.prepare.prepare_countdown`` (generated, solvable by construction,
same ranges as ``Jiayi-Pan/Countdown-Tasks-3to4``, the reference's prompt wording); the reward is the
reference's 1 / 0.1 / 0 score from ``mopps.tasks.countdown_reward``. A rollout counts as a success
for the selector when its reward is 1.0 (a correct equation), the reference's ``acc >= 1``. Watch
``mopps/zero_variance_frac`` fall and ``mopps/spearman`` rise in the logs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from datasets import Dataset

from mopps.integrations.trl import MoPPSGRPOConfig, MoPPSGRPOTrainer
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
    )
    if args.tiny:
        # 4 prompts x 4 rollouts per generation, 2 optimizer steps per generation; the checkpoint at
        # step 4 falls on a generation boundary.
        common.update(num_generations=4, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                      steps_per_generation=2, max_completion_length=16, max_steps=args.max_steps or 8,
                      save_steps=4, learning_rate=1e-3, use_cpu=True, eval_strategy="steps", eval_steps=4,
                      per_device_eval_batch_size=8, dataloader_num_workers=0)
    else:
        # 32 prompts x 8 rollouts = 256 per generation; 4 optimizer steps of 16 x 4 = 64 rollouts each.
        # save_steps is a multiple of 4, so every checkpoint falls on a generation boundary and a
        # resumed run makes exactly the uninterrupted run's choices.
        common.update(per_device_train_batch_size=16, gradient_accumulation_steps=4, steps_per_generation=16,
                      max_completion_length=1024, max_steps=args.max_steps or 1000, save_steps=100,
                      bf16=True, gradient_checkpointing=True, eval_strategy="steps", eval_steps=100,
                      per_device_eval_batch_size=64, use_vllm=args.vllm, vllm_mode="colocate")
    return MoPPSGRPOConfig(**common)


def tiny_model_and_tokenizer(texts: list[str]):
    """A 2-layer random Qwen2 and a whitespace WordLevel tokenizer over ``texts`` plus the tokens a
    Countdown answer needs; nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = sorted({word for text in texts for word in text.split()}
                   | {str(number) for number in range(101)} | set("+-*/()") | {"<answer>", "</answer>", "</think>"})
    vocab = {token: index for index, token in enumerate(["<pad>", "<eos>", "<unk>"] + words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", padding_side="left")
    torch.manual_seed(0)
    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, vocab_size=len(vocab), max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=True)
    return Qwen2ForCausalLM(config), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="Qwen/Qwen2.5-3B", help="Hub id or path of the base model")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--selector", choices=["mopps", "uniform"], default="mopps")
    parser.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default 1000; --tiny: 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM in colocate mode")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    parser.add_argument("--report-to", nargs="*", default=[], help="TRL logging backends, e.g. wandb")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with a tiny random model, offline")
    args = parser.parse_args()

    train_size, test_size = (64, 8) if args.tiny else (2000, 512)
    train, test = countdown_datasets(train_size, test_size, seed=args.seed)
    if args.tiny:
        os.environ["HF_HUB_OFFLINE"] = "1"
        model, tokenizer = tiny_model_and_tokenizer(list(train["prompt"]) + list(test["prompt"]))
    else:
        model, tokenizer = args.model, None

    trainer = MoPPSGRPOTrainer(
        model=model, reward_funcs=countdown_reward, args=training_config(args), train_dataset=train,
        eval_dataset=test, processing_class=tokenizer,
    )
    resume = args.resume and any(path.name.startswith("checkpoint-") for path in Path(args.output_dir).glob("*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_model()


if __name__ == "__main__":
    main()
