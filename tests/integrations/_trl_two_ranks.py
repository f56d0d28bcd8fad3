"""Run by ``test_trl_distributed.py`` under ``torchrun --nproc_per_node 2`` (gloo, CPU).

Usage: ``_trl_two_ranks.py OUT_DIR [same-seed|rank-seed|dynamic-sampling|dynamic-sampling-wide|allocation]``. Each rank trains the
tiny model with MoPPSGRPOTrainer and writes ``OUT_DIR/rank<r>.json``: its selector's choices, the
prompt ids its own reward function scored, its final posterior arrays, the loop's ``rollouts``, or
the error it raised; with ``dynamic-sampling`` (same seeds, max_num_gen_batches 6; ``-wide``: rounds
of 5 prompts) also what it
trained on per generation (``TrainedBatches.trained``) and the logged ``mopps/generation_batches``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _tiny_trl import (RecordingMoPPS, TrainedBatches, addition_dataset, prompt_log_reward, tiny_grpo_config,
                       tiny_model, tiny_tokenizer)


def main(out_dir: Path, seeding: str) -> None:
    tokenizer = tiny_tokenizer()
    # 3 prompts per generation x 4 generations = 12 rollouts, 6 per rank: the middle prompt's group
    # straddles the two ranks.
    refill = {"dynamic-sampling": dict(max_num_gen_batches=6),
              # rounds of 5 prompts (20 rollouts, 10 per rank) for a trained batch of 3 (12 rollouts, 6 per rank)
              "dynamic-sampling-wide": dict(max_num_gen_batches=6, dynamic_sampling_round_prompts=5)}.get(seeding, {})
    if seeding == "allocation":
        # mopps_pilot: groups of 8 (a pilot of 4 + 4), 16 rows per generation = 2 prompts, 8 rows per rank.
        args = tiny_grpo_config(out_dir / "run", per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                max_steps=3, ts_ratio=3, rollout_allocation="mopps_pilot")
    else:
        args = tiny_grpo_config(out_dir / "run", per_device_train_batch_size=3, gradient_accumulation_steps=2,
                                max_steps=3, ts_ratio=2, **refill)
    seed = args.process_index if seeding == "rank-seed" else 0
    selector = RecordingMoPPS(seed=seed)
    scored: list[int] = []
    trainer = TrainedBatches(model=tiny_model(tokenizer), reward_funcs=prompt_log_reward(scored), args=args,
                             train_dataset=addition_dataset(), processing_class=tokenizer, selector=selector)
    record = {"rank": args.process_index, "world": args.world_size}
    try:
        trainer.train()
    except RuntimeError as error:
        record["error"] = str(error)
    record.update(choices=selector.choices, steps=selector.steps, scored_prompt_ids=scored,
                  rollouts=trainer.loop.rollouts, trained=trainer.trained,
                  generation_batches=[entry["mopps/generation_batches"] for entry in trainer.state.log_history
                                      if "mopps/generation_batches" in entry],
                  pilot_rollouts=[entry["mopps/pilot_rollouts"] for entry in trainer.state.log_history
                                  if "mopps/pilot_rollouts" in entry],
                  arrays={name: (values.tolist() if hasattr(values, "tolist") else values)
                          for name, values in selector.state_dict()["arrays"].items()})
    (out_dir / f"rank{args.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
