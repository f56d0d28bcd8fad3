"""The deterministic supervised warm start, cached on disk.

RL needs a policy that already solves some prompts and fails others. We get one by supervised
training on freshly sampled problems and stopping early, at ``steps`` chosen so that under uniform
selection with n = 8 rollouts between 40% and 80% of groups are zero-variance at the start of RL.

The result depends only on ``WarmStartConfig`` (seeded torch and numpy generators, one thread) and
the torch version, so it is cached as the entry ``warmstart-<key>/`` (``policy.pt`` and a manifest) of
the testbed's one warm-start cache (``mopps.testbed.cache``: ``$MOPPS_CACHE`` or ``~/.cache/mopps``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mopps.testbed.cache import cache_dir, cache_key, load_or_build
from mopps.testbed.policy import Policy, PolicyConfig
from mopps.testbed.task import AdditionTask, Task, task_key

CACHE_FORMAT = 3  # bump when the training code changes what a config produces (2: one thread; 3: any task)
CACHE_NAME = "warmstart"
WEIGHTS = "policy.pt"

__all__ = ["WarmStartConfig", "cache_dir", "load_warm_start", "train_warm_start"]


@dataclass(frozen=True)
class WarmStartConfig:
    """Everything that determines the warm-started weights.

    ``task``: the task (any ``Task``; its class and parameters key the cache); ``width``/``layers``/``heads``: the policy;
    ``steps``: supervised Adam steps (the knob that sets how competent the start is);
    ``batch_size``: problems per step; ``learning_rate``: Adam step size; ``seed``: data and init.
    """

    task: Task = AdditionTask(5)
    width: int = 64
    layers: int = 2
    heads: int = 4
    steps: int = 450
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig(len(self.task.vocab), self.task.prompt_length + self.task.answer_length,
                            self.width, self.layers, self.heads)

    def key(self) -> str:
        """Short hash of every setting, the task, ``CACHE_FORMAT`` and the torch version (``cache_key``)."""
        settings = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "task"}
        return cache_key(CACHE_NAME, CACHE_FORMAT, {"task": task_key(self.task), **settings})


def train_warm_start(config: WarmStartConfig) -> Policy:
    """Supervised next-token training on the answer tokens of freshly sampled problems.

    Runs on one torch thread whatever the caller's setting: float sums over several threads are
    ordered differently, and a warm start trained on 2 threads differs from one trained on 1.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(threads)


def _train(config: WarmStartConfig) -> Policy:
    task = config.task
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)  # parameter initialisation only; data comes from ``rng``
    policy = Policy(config.policy_config())
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    prompt_length = task.prompt_length
    for _ in range(config.steps):
        problems = task.sample_problems(config.batch_size, rng)
        prompts = torch.from_numpy(task.encode_prompts(problems))
        answers = torch.from_numpy(task.encode_answers(problems))
        mask = torch.from_numpy(task.answer_mask(problems)).float()
        logits = policy(torch.cat([prompts, answers[:, :-1]], dim=1))[:, prompt_length - 1:]
        loss = F.cross_entropy(logits.transpose(1, 2), answers, reduction="none")
        loss = (loss * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy


def load_warm_start(config: WarmStartConfig) -> Policy:
    """The warm-started policy for ``config``: read from the cache, or trained once and cached (a
    damaged cache entry is rebuilt, with a ``RuntimeWarning``)."""

    def read(folder: Path) -> Policy:
        policy = Policy(config.policy_config())
        policy.load_state_dict(torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True))
        return policy

    return load_or_build(CACHE_NAME, config.key(), repr(config), lambda: train_warm_start(config),
                         lambda policy, folder: torch.save(policy.state_dict(), folder / WEIGHTS), read)
