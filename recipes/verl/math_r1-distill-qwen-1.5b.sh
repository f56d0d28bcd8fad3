#!/usr/bin/env bash
# MATH (MATH-lighteval train, 7,500 prompts) with DeepSeek-R1-Distill-Qwen-1.5B, as in the MoPPS paper.
#
#   mopps data math --out "$DATA_DIR"               # train.parquet, test.parquet in verl's schema
#   bash recipes/verl/math_r1-distill-qwen-1.5b.sh mopps|uniform|ds|mopps_ds [extra hydra overrides ...]
#
# Paper settings: B = 256, mini-batch 128, prompt/response 1024/8192, ts_ratio 16, lambda 1.0; DS cap 4.
# TOTAL_EPOCHS defaults to 40: the reference's Uniform arm ran 1,160 steps = 40 epochs x 29 steps.
# Environment: DATA_DIR, MODEL_PATH, TOTAL_EPOCHS, and those listed in common.sh.
set -euo pipefail
METHOD=${1:?usage: $0 mopps|uniform|ds|mopps_ds [hydra overrides ...]}
shift
export DATA_DIR=${DATA_DIR:-$HOME/data/mopps/math}
export MODEL_PATH=${MODEL_PATH:-deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B}
export TOTAL_EPOCHS=${TOTAL_EPOCHS:-40}
source "$(cd "$(dirname "$0")" && pwd)/common.sh"
run_recipe math-r1-distill-qwen-1.5b "$METHOD" 16 1.0 4 \
  data.train_batch_size=256 \
  data.max_prompt_length=1024 \
  data.max_response_length=8192 \
  actor_rollout_ref.actor.ppo_mini_batch_size=128 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=18432 \
  actor_rollout_ref.rollout.max_num_batched_tokens=18432 \
  "$@"
