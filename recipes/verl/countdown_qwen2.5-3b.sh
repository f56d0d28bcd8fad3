#!/usr/bin/env bash
# Countdown (Countdown-Tasks-3to4, first 2,000 prompts) with Qwen2.5-3B base, as in the MoPPS paper.
#
#   mopps data countdown --out "$DATA_DIR" --source hub   # train.parquet, test.parquet in verl's schema
#   bash recipes/verl/countdown_qwen2.5-3b.sh mopps|uniform|ds|mopps_ds [extra hydra overrides ...]
#
# Paper settings: B = 256, mini-batch 64, prompt/response 256/1024, ts_ratio 8, lambda 0.5; DS cap 10.
# Environment: DATA_DIR, MODEL_PATH, TOTAL_EPOCHS, and those listed in common.sh.
set -euo pipefail
METHOD=${1:?usage: $0 mopps|uniform|ds|mopps_ds [hydra overrides ...]}
shift
export DATA_DIR=${DATA_DIR:-$HOME/data/mopps/countdown}
export MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-3B}
export TOTAL_EPOCHS=${TOTAL_EPOCHS:-40}  # the reference's Countdown epoch count is not in our notes: set your budget
source "$(cd "$(dirname "$0")" && pwd)/common.sh"
run_recipe countdown-qwen2.5-3b "$METHOD" 8 0.5 10 \
  data.train_batch_size=256 \
  data.max_prompt_length=256 \
  data.max_response_length=1024 \
  actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=10240 \
  "$@"
