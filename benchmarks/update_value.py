"""The cost model, measured: how much one GRPO update is worth as a function of how many of its
groups are informative (issue 22, item 6).

From one policy and optimiser state (the preset's warm start trained ``--burn-in`` Uniform steps),
each trial builds a batch of k informative groups (prompts drawn from the pool, n rollouts each,
mixed groups kept until k) and takes ONE GRPO update (the testbed's ``grpo_update``) from copies of
that same policy and optimiser. Two batch shapes per k:

- ``k of B``: the k informative groups plus B - k all-equal groups (what a step of B prompts with k
  informative ones trains on: the all-equal ones get advantage 0 and only dilute the token mean);
- ``k alone``: the k informative groups only (what a smaller batch would train on).

The value of an update is the change of held-out test accuracy (exact, 1000 prompts), averaged over
``--trials`` trials, with a 90% interval (normal, over trials). The per-rollout question follows:
DS pays about 1 / (informative share) times Uniform's rollouts to fill B informative groups; it wins
per rollout only if value(B of B) / value(k_U of B) exceeds that ratio (k_U: Uniform's informative
groups per step).

Run: ``python benchmarks/update_value.py`` (recurring preset; about 4 minutes on one core).
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import replace

import numpy as np
import torch

from mopps.bench.presets import resolve
from mopps.testbed.grpo import grpo_update, make_pools, rollout
from mopps.testbed.warmstart import load_warm_start


def informative_batch(policy, task, pool, config, k: int, rng, generator):
    """``(mixed, fill)``: k mixed groups and at least ``config.batch_size - k`` all-equal ones, each
    ``(prompt row, completions (n, L), rewards (n,))``, from uniform batches of the pool."""
    n = config.group_size
    mixed, fill = [], []
    while len(mixed) < k or len(fill) < config.batch_size - k:
        rows = rng.choice(len(pool), config.batch_size, replace=False)
        completions, rewards = rollout(policy, task, pool, rows, n, generator)
        grouped = rewards.reshape(-1, n)
        for index, row in enumerate(rows.tolist()):
            group = (row, completions[index * n:(index + 1) * n], grouped[index])
            (mixed if 0 < grouped[index].sum() < n else fill).append(group)
    return mixed[:k], fill


def stack(groups):
    rows = np.array([row for row, _, _ in groups], dtype=np.int64)
    return rows, torch.cat([completions for _, completions, _ in groups]), np.concatenate([r for _, _, r in groups])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="recurring")
    parser.add_argument("--burn-in", type=int, default=50, help="Uniform steps before the measured updates")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--sizes", default="4,8,16,32")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config, _ = resolve(args.preset)
    config = replace(config, seed=args.seed)
    task, train_pool, test_pool = make_pools(config)
    policy = load_warm_start(config.warm_start)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n, B = config.group_size, config.batch_size
    shares = []
    for _ in range(args.burn_in):  # Uniform GRPO steps: a policy and an Adam state in mid-run
        rows = rng.choice(len(train_pool), B, replace=False)
        completions, rewards = rollout(policy, task, train_pool, rows, n, generator)
        shares.append(np.mean([0 < group.sum() < n for group in rewards.reshape(-1, n)]))
        grpo_update(policy, optimizer, config, task.eos, train_pool.prompts[np.repeat(rows, n)], completions,
                    rewards, generator)
    test_rows = np.arange(len(test_pool))
    start = test_pool.exact_rates(policy, test_rows).mean()
    print(f"preset {args.preset}, seed {args.seed}, after {args.burn_in} Uniform steps: test accuracy {start:.4f}, "
          f"informative share of a Uniform batch {np.mean(shares[-20:]):.2f} (last 20 steps); {args.trials} trials")
    print(f"{'k':>4} {'shape':>9} {'groups':>6} {'Δ test acc (mean)':>18} {'90% interval':>22} {'per informative group':>22}")
    sizes = [int(size) for size in args.sizes.split(",")]
    for k in sizes:
        gains = {"k of B": [], "k alone": []}
        for _ in range(args.trials):
            mixed, fill = informative_batch(policy, task, train_pool, config, k, rng, generator)
            for shape, groups in (("k of B", mixed + fill[:B - k]), ("k alone", mixed)):
                trial_policy = copy.deepcopy(policy)
                trial_optimizer = torch.optim.Adam(trial_policy.parameters(), lr=config.learning_rate)
                trial_optimizer.load_state_dict(optimizer.state_dict())
                rows, completions, rewards = stack(groups)
                trial_generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
                grpo_update(trial_policy, trial_optimizer, config, task.eos, train_pool.prompts[np.repeat(rows, n)],
                            completions, rewards, trial_generator)
                gains[shape].append(test_pool.exact_rates(trial_policy, test_rows).mean() - start)
        for shape, values in gains.items():
            values = np.array(values)
            half = 1.645 * values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
            groups = B if shape == "k of B" else k
            print(f"{k:>4} {shape:>9} {groups:>6} {values.mean():>18.5f} "
                  f"{f'[{values.mean() - half:.5f}, {values.mean() + half:.5f}]':>22} {values.mean() / k:>22.6f}")


if __name__ == "__main__":
    main()
