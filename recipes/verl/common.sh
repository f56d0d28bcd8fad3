# Shared by the recipe scripts: the paper's common settings and the three arms (sourced, not run).
#
# run_recipe NAME METHOD TS_RATIO DECAY MAX_GEN_BATCHES [hydra overrides...]
#   METHOD mopps    : MoPPS trainer (config/mopps_trainer.yaml), ts_ratio x B candidates, keep B.
#   METHOD uniform  : verl's own trainer and sampler (uniform shuffling), nothing of mopps but the reward.
#   METHOD ds       : verl's built-in DAPO dynamic sampling (drop groups whose acc is all-equal, refill).
#   METHOD mopps_ds : the MoPPS trainer with mopps.Refill: dynamic sampling whose generation batches
#                     MoPPS chooses, at most MAX_GEN_BATCHES per step (the reference's cap).
# Environment: DATA_DIR (train.parquet and test.parquet from `mopps data`), MODEL_PATH, NNODES (1),
# N_GPUS_PER_NODE (8), TOTAL_EPOCHS, PROJECT (mopps-verl), LOGGER
# (['console','wandb']), CKPT_ROOT ($HOME/ckpts/mopps), PYTHON (python3), DRY_RUN=1 prints the
# command's arguments one per line instead of running it (the CPU tests compose them with hydra).

run_recipe() {
  local name=$1 method=$2 ts_ratio=$3 decay=$4 max_gen_batches=$5
  shift 5
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  local experiment="${name}-${method}"
  local common=(
    algorithm.adv_estimator=grpo
    algorithm.use_kl_in_reward=False
    actor_rollout_ref.actor.use_kl_loss=False
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.optim.weight_decay=0.1
    actor_rollout_ref.actor.entropy_coeff=0.001
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.val_kwargs.n=16
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    actor_rollout_ref.rollout.gpu_memory_utilization=0.7
    actor_rollout_ref.rollout.tensor_model_parallel_size=1
    data.train_files="${DATA_DIR:?set DATA_DIR}/train.parquet"
    data.val_files="$DATA_DIR/test.parquet"
    actor_rollout_ref.model.path="${MODEL_PATH:?set MODEL_PATH}"
    data.shuffle=True
    data.filter_overlong_prompts=True
    data.truncation=error
    reward.custom_reward_function.path=pkg://mopps.tasks
    reward.custom_reward_function.name=compute_score
    trainer.project_name="${PROJECT:-mopps-verl}"
    trainer.experiment_name="$experiment"
    trainer.logger="${LOGGER:-['console','wandb']}"
    trainer.nnodes="${NNODES:-1}"
    trainer.n_gpus_per_node="${N_GPUS_PER_NODE:-8}"
    trainer.total_epochs="${TOTAL_EPOCHS:?set TOTAL_EPOCHS}"
    trainer.test_freq=5
    trainer.save_freq=5
    trainer.val_before_train=True
    trainer.default_local_dir="${CKPT_ROOT:-$HOME/ckpts/mopps}/$experiment"
    trainer.resume_mode=auto
  )
  local arm
  case "$method" in
    mopps)
      arm=(--config-path="$here/config" --config-name=mopps_trainer
           mopps.ts_ratio="$ts_ratio" mopps.bandit_decay_ratio="$decay" mopps.reward_key=acc) ;;
    mopps_ds)
      arm=(--config-path="$here/config" --config-name=mopps_trainer
           mopps.ts_ratio="$ts_ratio" mopps.bandit_decay_ratio="$decay" mopps.reward_key=acc
           mopps.max_num_gen_batches="$max_gen_batches") ;;
    uniform)
      arm=() ;;
    ds)
      arm=(algorithm.filter_groups.enable=True algorithm.filter_groups.metric=acc) ;;
    *)
      echo "METHOD must be mopps, uniform, ds or mopps_ds, not '$method'" >&2
      return 2 ;;
  esac
  local args=("${arm[@]}" "${common[@]}" "$@")
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%s\n' "${args[@]}"
  else
    "${PYTHON:-python3}" -m verl.trainer.main_ppo "${args[@]}"
  fi
}
