"""The bench's frozen presets: three regimes, their quick versions, and a CI-sized one, per task.

Frozen means chosen once by regime criteria (zero-variance share at the start of RL between 40% and
80%, visits per prompt, self-influence) and never tuned toward a selector. A preset is a regime
(pool size, steps, batch) plus, per built-in task, the warm start calibrated for it: the warm start's
supervised steps are what sets the starting zero-variance share.

- ``recurring``: the paper's regime. A small training pool, so each prompt is rolled out 10-30 times
  over a run and the ``ts_ratio * B`` candidates are a large fraction of the pool.
- ``fresh``: a large pool; most prompts are rolled out at most a few times.
- ``transfer``: one update moves untrained prompts of the same exact rate at least 30% as much as the
  trained ones (LLM-like transfer), with prompts recurring >= 10 times: sorting, a policy caught early
  in learning the skill, 64 prompts per update. Chosen by the criteria alone; the settings tried and
  their measurements are in docs/bench.md.
- ``tiny``: seconds end to end, for CI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mopps.core.validation import check_choice
from mopps.testbed.grpo import TestbedConfig
from mopps.testbed.task import AdditionTask, SortTask, load_task
from mopps.testbed.warmstart import WarmStartConfig


@dataclass(frozen=True)
class Preset:
    """A named regime: ``config`` (with ``default_task``'s warm start), the seeds it averages over by
    default, and ``warm_starts``, the calibrated warm start of each built-in task it supports."""

    name: str
    config: TestbedConfig
    seeds: tuple[int, ...]
    description: str
    default_task: str
    warm_starts: dict[str, WarmStartConfig] = field(default_factory=dict)


# Default policy (width 64, 2 layers), warm-started until the start's zero-variance share is 40-80%.
_ADDITION = WarmStartConfig(task=AdditionTask(5), steps=450)  # zero-variance 0.45 (recurring pool)
_SORT = WarmStartConfig(task=SortTask(max_length=12), steps=330)  # zero-variance 0.51 (recurring pool)
_STANDARD = {"addition": _ADDITION, "sort": _SORT}
# transfer: a width-32 policy stopped early in learning to sort (test accuracy 0.09, zero-variance 0.64).
_TRANSFER_SORT = WarmStartConfig(task=SortTask(max_length=12), width=32, steps=200)
_TINY = {
    "addition": WarmStartConfig(task=AdditionTask(2), width=32, layers=1, heads=2, steps=400, batch_size=64,
                                learning_rate=3e-3),
    "sort": WarmStartConfig(task=SortTask(max_length=4, min_length=2), width=32, layers=1, heads=2, steps=200,
                            batch_size=64, learning_rate=3e-3),
}

DEFAULT_SEEDS = (0, 1, 2, 3, 4)

def _preset(name: str, config: TestbedConfig, seeds: tuple[int, ...], description: str, default_task: str,
            warm_starts: dict[str, WarmStartConfig]) -> Preset:
    return Preset(name, replace(config, warm_start=warm_starts[default_task]), seeds, description, default_task,
                  warm_starts)


PRESETS = {
    "recurring": _preset("recurring", TestbedConfig(train_pool_size=640, steps=400), DEFAULT_SEEDS,
                         "paper's regime: 640 training prompts, each rolled out 20 times on average",
                         "addition", _STANDARD),
    "fresh": _preset("fresh", TestbedConfig(train_pool_size=20000, steps=400), DEFAULT_SEEDS,
                     "20,000 training prompts, each rolled out 0.64 times on average", "addition", _STANDARD),
    "transfer": _preset("transfer", TestbedConfig(train_pool_size=1280, steps=250, batch_size=64), DEFAULT_SEEDS,
                        "sorting, 1,280 prompts rolled out 12.5 times each, 64 per update; an update moves "
                        "untrained prompts ~40% as much as trained ones", "sort", {"sort": _TRANSFER_SORT}),
    "tiny": _preset("tiny", TestbedConfig(train_pool_size=64, test_size=64, steps=4, batch_size=4, group_size=4,
                                       ts_ratio=4, ds_max_gen_batches=3, eval_every=2, influence_every=2,
                                       influence_probe=8, influence_reservoir=16), (0,), "CI smoke test", "addition", _TINY),
}

QUICK_STEPS = 200  # --quick: at most this many steps, one seed
# --quick runs the four lines that answer "does pre-selection pay here?": the baseline, the paper's
# MoPPS (lambda = 0.5, the better of the two on both presets), the shared predictor and the ceiling,
# in both regimes (QUICK_PRESETS), since the answer differs by regime; DS spends more rollouts per
# step than the others and is in the full tables.
QUICK_METHODS = ("uniform", "mopps_lambda0.5", "contextual", "oracle")
QUICK_PRESETS = ("fresh", "recurring")
QUICK_SEEDS = (0,)
MAP_STEPS = 250  # --map: at most this many steps per run (the map runs every selector at five pool sizes)
MAP_SEEDS = (0, 1, 2)
QUICK_MAP_STEPS = 100


def resolve(name: str, task: str | None = None, quick: bool = False, steps: int | None = None,
            seeds: tuple[int, ...] | None = None, warm_start_steps: int | None = None,
            regime_map: bool = False) -> tuple[TestbedConfig, tuple[int, ...]]:
    """The config and seeds for preset ``name`` on ``task`` (a built-in name the preset calibrates,
    ``module:Class`` for a user's task, or None for the preset's own), with ``--map`` / ``--quick`` /
    ``--steps`` / ``--seeds`` / ``--warm-start-steps`` applied (``--map`` shortens runs and takes
    fewer seeds, since it runs every selector at several pool sizes).

    A user's task gets the preset's default policy and warm-start schedule; choose its supervised
    ``warm_start_steps`` so the start's zero-variance share (printed by the bench) is 40-80%.
    """
    check_choice(name, "preset", sorted(PRESETS))
    preset = PRESETS[name]
    task = preset.default_task if task is None else task
    if task in preset.warm_starts:
        warm_start = preset.warm_starts[task]
    elif ":" in task:
        warm_start = replace(preset.config.warm_start, task=load_task(task))
    else:
        raise ValueError(f"task = {task!r}; preset {name!r} is calibrated for {sorted(preset.warm_starts)}; "
                         "a task of your own is module:Class")
    if warm_start_steps is not None:
        warm_start = replace(warm_start, steps=warm_start_steps)
    config, chosen_seeds = replace(preset.config, warm_start=warm_start), preset.seeds
    if regime_map:
        config, chosen_seeds = replace(config, steps=min(config.steps, MAP_STEPS)), MAP_SEEDS
    if quick:
        most = QUICK_MAP_STEPS if regime_map else QUICK_STEPS
        config, chosen_seeds = replace(config, steps=min(config.steps, most)), QUICK_SEEDS
    if steps is not None:
        config = replace(config, steps=steps)
    if seeds is not None:
        chosen_seeds = tuple(seeds)
    return config, chosen_seeds
