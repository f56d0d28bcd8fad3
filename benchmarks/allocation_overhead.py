"""The per-step cost of the allocation decision, against the plain select -> observe step.

Both on the same loop set-up (MoPPS lambda = 0.5 over 40,000 int ids, B = 256 prompts per step from
ts_ratio 8 x B candidates, n = 8 rollouts), with a rollout function that only draws Bernoulli rewards
from fixed true rates, so the figures are mopps's own time per step (no model). Reported: the median
ms per step of each rule's ``Allocation.step`` and of ``loop.next`` + ``loop.observe`` (the plain
step), and their ratio, measured in the same process after a warm-up.

Run: ``python benchmarks/allocation_overhead.py`` (about 30 s on one core).
"""

from __future__ import annotations

import time

import numpy as np

from mopps import MoPPS, SelectionLoop, SuccessRule, Uniform
from mopps.loop import Allocation, PilotCommit, PosteriorPilot, ReinforceAda, SpeedScreen

PROMPTS, B, N, TS_RATIO = 40_000, 256, 8, 8


def timed(step, steps: int = 40, warmup: int = 5) -> float:
    """Median ms of ``step()`` over ``steps`` calls after ``warmup``."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def main() -> None:
    rates = np.random.default_rng(0).beta(0.7, 0.7, PROMPTS)
    rng = np.random.default_rng(1)

    def rollout(request):
        return (rng.random(len(request) * request.rollouts_per_prompt)
                < np.repeat(rates[request.positions], request.rollouts_per_prompt)).astype(float)

    def loop_with(selector, ts_ratio):
        return SelectionLoop(selector, np.arange(PROMPTS), rule=SuccessRule("threshold", 1.0), ts_ratio=ts_ratio, seed=0)

    plain = loop_with(MoPPS(discount=0.5, seed=0), TS_RATIO)

    def plain_step():
        batch = plain.next(B)
        plain.observe(np.repeat(batch.ids, N), rollout(type("R", (), {"positions": batch.positions,
                                                                        "rollouts_per_prompt": N,
                                                                        "__len__": lambda self: B})()))

    baseline = timed(plain_step)
    print(f"MoPPS lambda=0.5, {PROMPTS:,} prompts, B = {B}, n = {N}; median ms per step (mopps's own time)")
    print(f"{'step':<34} {'ms/step':>8} {'vs plain':>9}")
    print(f"{'plain: next + observe':<34} {baseline:>8.2f} {1.0:>9.2f}")
    for name, selector, ts_ratio, rule in (
            ("mopps_pilot (PosteriorPilot)", MoPPS(discount=0.5, seed=0), TS_RATIO, PosteriorPilot()),
            ("pilot_commit (PilotCommit)", Uniform(seed=0), 1, PilotCommit()),
            ("speed_rl (SpeedScreen)", Uniform(seed=0), 1, SpeedScreen()),
            ("reinforce_ada (ReinforceAda)", Uniform(seed=0), 1, ReinforceAda())):
        allocation = Allocation(loop_with(selector, ts_ratio), rule, N)
        figure = timed(lambda: allocation.step(B, rollout))
        print(f"{name:<34} {figure:>8.2f} {figure / baseline:>9.2f}")


if __name__ == "__main__":
    main()
