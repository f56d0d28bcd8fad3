"""Zero-variance share of the groups MoPPSGRPOTrainer trains on: MoPPS against Uniform, on CPU.

The policy is ``mopps.testbed.hf_tiny``'s warm-started tiny Qwen2 (mixed rewards on 2-digit addition;
built once into the cache, about 20 s). Per seed it runs TRL GRPO twice on the same dataset and seed,
once with ``mopps.Uniform(seed)`` and once with the built-in MoPPS (``--ts-ratio``,
``--decay`` = ``bandit_decay_ratio``), and prints one JSON line per run: ``zero_var`` = share of the
trained groups whose ``--generations`` rewards are all equal (from the rewards the reward function
returned), also for the first and second half of the run, and ``success`` = mean reward.

    nice python benchmarks/trl_tiny_hf_zero_variance.py --rows 32 --steps 40 --seeds 0,1,2,3,4

With ``--dynamic-sampling N`` both runs use DAPO's dynamic sampling (``max_num_gen_batches`` N; Uniform =
plain DAPO, MoPPS = guided refills); ``zero_var`` is then over every *generated* group and
``generated_rollouts`` is what the run rolled out to train the same number of groups.
"""

from __future__ import annotations

import argparse
import json
import tempfile

import numpy as np
import torch
from transformers import PrinterCallback

from mopps import Uniform
from mopps.integrations.trl import MoPPSGRPOConfig, MoPPSGRPOTrainer
from mopps.testbed import hf_tiny


def run(kind: str, seed: int, dataset, args, output_dir: str) -> dict:
    """One TRL run; ``kind``: "uniform" or "mopps". Returns the JSON-ready figures."""
    rewards: list[float] = []
    config = hf_tiny.TinyConfig()
    model, tokenizer = hf_tiny.load_tiny_policy(config)
    selection = {} if kind == "uniform" else {"bandit_decay_ratio": args.decay}
    selection["max_num_gen_batches"] = args.dynamic_sampling
    trl_args = MoPPSGRPOConfig(
        output_dir=output_dir, use_cpu=True, per_device_train_batch_size=args.prompts_per_step * args.generations,
        num_generations=args.generations, max_completion_length=config.task.answer_length + 1,
        max_steps=args.steps, learning_rate=args.learning_rate, logging_steps=1, save_strategy="no", report_to=[],
        seed=seed, temperature=1.0, dataloader_num_workers=0, disable_tqdm=True, ts_ratio=args.ts_ratio,
        id_column="prompt_id", **selection,
    )
    trainer = MoPPSGRPOTrainer(model=model, reward_funcs=hf_tiny.recording_reward(rewards), args=trl_args, train_dataset=dataset,
                               processing_class=tokenizer, selector=Uniform(seed=seed) if kind == "uniform" else None)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    groups = np.asarray(rewards).reshape(-1, args.generations)
    zero = groups.std(axis=1) == 0
    half = len(groups) // 2
    return {"kind": kind, "seed": seed, "groups": len(groups), "zero_var": round(float(zero.mean()), 3),
            "first_half": round(float(zero[:half].mean()), 3), "second_half": round(float(zero[half:].mean()), 3),
            "success": round(float(groups.mean()), 3), "generated_rollouts": int(groups.size),
            "trained_rollouts": args.steps * args.prompts_per_step * args.generations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32, help="dataset size (build_dataset(rows, seed=0))")
    parser.add_argument("--steps", type=int, default=40, help="GRPO steps per run")
    parser.add_argument("--prompts-per-step", type=int, default=4, help="groups trained per step")
    parser.add_argument("--generations", type=int, default=4, help="rollouts per prompt")
    parser.add_argument("--ts-ratio", type=float, default=4.0, help="candidates per chosen prompt")
    parser.add_argument("--decay", type=float, default=0.5, help="MoPPS bandit_decay_ratio")
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated TRL / selector seeds")
    parser.add_argument("--dynamic-sampling", type=int, default=0, metavar="N",
                        help="max_num_gen_batches for both runs (0 = no dynamic sampling)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the model is tiny: one thread is faster on a shared machine
    dataset = hf_tiny.build_dataset(args.rows, seed=0)
    rates = hf_tiny.success_rates(hf_tiny.load_tiny_model(), dataset)
    print(json.dumps({"rows": args.rows, "start_expected_zero_var": round(
        hf_tiny.expected_zero_variance_share(rates, args.generations), 3)}), flush=True)
    totals: dict[str, list[float]] = {"uniform": [], "mopps": []}
    generated: dict[str, list[int]] = {"uniform": [], "mopps": []}
    with tempfile.TemporaryDirectory() as output_dir:
        for seed in (int(text) for text in args.seeds.split(",")):
            for kind in totals:
                figures = run(kind, seed, dataset, args, output_dir)
                totals[kind].append(figures["zero_var"])
                generated[kind].append(figures["generated_rollouts"])
                print(json.dumps(figures), flush=True)
    print(json.dumps({"mean_zero_var": {kind: round(float(np.mean(values)), 3) for kind, values in totals.items()},
                      "seeds_mopps_lower": int(np.sum(np.array(totals["mopps"]) < np.array(totals["uniform"]))),
                      "generated_rollouts": generated,
                      "mopps_over_uniform_rollouts": [round(m / u, 3) for m, u in zip(generated["mopps"],
                                                                                       generated["uniform"])]}))


if __name__ == "__main__":
    main()
