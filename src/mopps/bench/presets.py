"""The bench's frozen presets: the two regimes of the issue, their quick versions, and a CI-sized one.

Frozen means chosen once by the testbed criteria (zero-variance share at the start of RL between 40%
and 80%, Uniform GRPO gaining >= 8 points of test accuracy in the default budget, the visits per
prompt of each regime) and never tuned toward a selector. Everything except the pool size and the
number of steps is the same in both regimes.

- ``recurring``: the paper's regime. A small training pool, so each prompt is rolled out 10-30 times
  over a run and the ``ts_ratio * B`` candidates are a large fraction of the pool.
- ``fresh``: a large pool; most prompts are rolled out at most a few times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mopps.testbed.grpo import GRPOConfig
from mopps.testbed.warmstart import WarmStartConfig


@dataclass(frozen=True)
class Preset:
    """A named run configuration and the seeds it averages over by default."""

    name: str
    config: GRPOConfig
    seeds: tuple[int, ...]
    description: str


_RECURRING = GRPOConfig(train_pool_size=640, steps=400)
_FRESH = GRPOConfig(train_pool_size=20000, steps=400)

PRESETS = {
    "recurring": Preset("recurring", _RECURRING, (0, 1, 2),
                        "paper's regime: 640 training prompts, each rolled out 20 times on average"),
    "fresh": Preset("fresh", _FRESH, (0, 1, 2),
                    "20,000 training prompts, each rolled out 0.64 times on average"),
    # For tests: a tiny policy, a few steps, seconds end to end.
    "tiny": Preset("tiny", GRPOConfig(train_pool_size=64, test_size=64, steps=4, batch_size=4, group_size=4,
                                      ts_ratio=4, ds_max_gen_batches=3, eval_every=2, influence_probe=8,
                                      warm_start=WarmStartConfig(digits=2, width=32, layers=1, heads=2,
                                                                 steps=400, batch_size=64, learning_rate=3e-3)),
                   (0,), "CI smoke test"),
}

QUICK_STEPS = 200  # --quick: half the steps, one seed
QUICK_SEEDS = (0,)


def resolve(name: str, quick: bool = False, steps: int | None = None,
            seeds: tuple[int, ...] | None = None) -> tuple[GRPOConfig, tuple[int, ...]]:
    """The config and seeds for preset ``name``, with ``--quick`` / ``--steps`` / ``--seeds`` applied."""
    if name not in PRESETS:
        raise ValueError(f"preset = {name!r}; preset must be one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    config, chosen_seeds = preset.config, preset.seeds
    if quick:
        config, chosen_seeds = replace(config, steps=min(config.steps, QUICK_STEPS)), QUICK_SEEDS
    if steps is not None:
        config = replace(config, steps=steps)
    if seeds is not None:
        chosen_seeds = tuple(seeds)
    return config, chosen_seeds
