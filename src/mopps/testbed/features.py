"""Per-prompt features for the contextual selector, as a user of a real run would have them.

- ``"generic"``: the frozen warm-start model's final hidden states, mean-pooled over the prompt's
  tokens (width 64). This is what any user has: the base model they start RL from, run once over the
  prompts before training. Never features of the *current* policy (that would be a rollout).
- ``"task"``: the task's own difficulty descriptors (``mopps.testbed.task.task_features``; for
  addition: operand and answer digit counts, number of carries). Knowledge a user rarely has this
  precisely: an upper line.
"""

from __future__ import annotations

import numpy as np
import torch

from mopps.core.validation import check_choice
from mopps.testbed.task import task_features

FEATURE_SOURCES = ("generic", "task")


@torch.no_grad()
def pool_features(source: str, task, pool, policy, chunk: int = 4096) -> np.ndarray:
    """Features of every prompt of ``pool`` (a ``mopps.testbed.grpo.Pool``), float32 (m, d).

    ``source``: one of ``FEATURE_SOURCES``; ``policy``: the warm-started policy (only ``"generic"``
    reads it; call before any RL update). d = the policy width for ``"generic"``, the number of the
    task's feature columns for ``"task"`` (4 for addition), in the task's order.
    """
    check_choice(source, "source", FEATURE_SOURCES)
    if source == "task":
        columns = task_features(task, pool.problems)
        if not columns:
            raise ValueError(f"source = 'task' but the task {task!r} defines no features")
        return np.stack(list(columns.values()), axis=1).astype(np.float32)
    if source == "generic":
        pooled = [policy.hidden_states(pool.prompts[start:start + chunk]).mean(dim=1)
                  for start in range(0, len(pool), chunk)]
        return torch.cat(pooled).numpy().astype(np.float32)
    raise NotImplementedError(f"source {source!r} is in FEATURE_SOURCES but has no branch here")
