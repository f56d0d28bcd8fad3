"""Selector overhead: mopps's select + update per step against a dict-of-strings reference.

The baseline re-implements, from the description in ../shared/notes/paper.md, what the MoPPS
reference code does per step: posteriors in a Python dict keyed by ``str(index)``, entries created
lazily among the candidates, one Thompson draw per candidate, the B closest to the target kept, and a
per-prompt Python loop for the update. Both run in this process on the same inputs.

Figures printed (a table, then one JSON line):
- per-step select + update at B = 256 from 4,096 candidates over a 40k-prompt pool (integer ids as
  in verl's ``extra_info.index``), mopps vs reference, and their ratio;
- full-pool selection: all 1M prompts are candidates, B = 1,024 (select + update per step);
- state bytes per prompt with 10M prompts;
- save and load time of a 10M-prompt state, integer ids (and string ids beside, for reference);
- ContextualMoPPS beside MoPPS: select + update per step at B = 256 from 4,096 candidates over a
  40k-prompt pool with d = 64 features, its memory per prompt, and save / load of a 1M-prompt,
  d = 64 state.

Run: ``python benchmarks/selector_overhead.py`` (about 45 s on two cores; ``--quick`` for a smaller run).
Times are wall clock; numpy's BLAS threads are left at the environment's setting (on a busy machine,
``OPENBLAS_NUM_THREADS=1`` makes ContextualMoPPS's small matrix products faster, not slower).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mopps import ContextualMoPPS, MoPPS


class ReferenceDictMoPPS:
    """The reference algorithm as its code runs it (our own re-implementation, not its code).

    Two dicts ``str(index) -> float`` for alpha and beta, entries created lazily while looping over the
    candidates, numpy's global-style ``RandomState`` for the Beta draws, a full ``argsort`` of the
    squared distances, and a per-prompt Python loop for the update (with the n == 1 bug fixed).
    Candidate indices arrive as a numpy array, as verl's ``non_tensor_batch['index']`` does.
    """

    def __init__(self, prior: float = 1.0, decay: float = 1.0, target: float = 0.5, seed: int = 0):
        self.prior = prior
        self.decay = decay
        self.target = target
        self.random_state = np.random.RandomState(seed)
        self.alpha: dict[str, float] = {}
        self.beta: dict[str, float] = {}

    def select(self, candidate_indices: np.ndarray, k: int) -> np.ndarray:
        alphas, betas = [], []
        for index in candidate_indices:
            key = str(index)
            if key not in self.alpha.keys():
                self.alpha[key] = self.prior
            alphas.append(self.alpha[key])
            if key not in self.beta.keys():
                self.beta[key] = self.prior
            betas.append(self.beta[key])
        draws = self.random_state.beta(np.array(alphas), np.array(betas))
        distance = (draws - self.target) ** 2
        chosen = np.argsort(distance)[:k]
        return candidate_indices[chosen]

    def update(self, indices: np.ndarray, success_rates: np.ndarray, n: int) -> None:
        for index, rate in zip(indices, success_rates):
            key = str(index)
            self.alpha[key] = self.alpha[key] * self.decay + self.prior * (1 - self.decay) + rate * n
            self.beta[key] = self.beta[key] * self.decay + self.prior * (1 - self.decay) + (1 - rate) * n


def per_step_ms(run_step, steps: int) -> float:
    """Median wall time of one step in milliseconds over ``steps`` steps (after 5 warm-up steps)."""
    for _ in range(5):
        run_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run_step()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def bench_step(pool: int, n_candidates: int, batch: int, steps: int) -> tuple[float, float]:
    """(mopps ms/step, reference ms/step) for select + update with n = 8 rollouts."""
    data_rng = np.random.default_rng(0)
    true_rate = data_rng.random(pool)
    ours = MoPPS(seed=0)
    reference = ReferenceDictMoPPS(seed=0)
    # Warm both so every prompt has an entry, as after the first epoch of a run.
    ours.update(np.arange(pool), np.zeros(pool), np.full(pool, 1.0))
    reference.select(np.arange(pool), 1)
    trials = np.full(batch, 8.0)

    def candidates():
        return data_rng.choice(pool, n_candidates, replace=False)

    def ours_step():
        choice = ours.select(candidates(), batch)
        successes = np.round(true_rate[choice.ids] * 8)
        ours.update(choice.ids, successes, trials)

    def reference_step():
        chosen = reference.select(candidates(), batch)
        rates = np.round(true_rate[chosen] * 8) / 8
        reference.update(chosen, rates, 8)

    # Candidate drawing is the dataloader's job; time it alone and subtract it from both.
    draw_ms = per_step_ms(candidates, steps)
    return per_step_ms(ours_step, steps) - draw_ms, per_step_ms(reference_step, steps) - draw_ms


def bench_full_pool(pool: int, batch: int, steps: int) -> float:
    """mopps ms per select + update when every prompt of the pool is a candidate."""
    ours = MoPPS(seed=0)
    ids = np.arange(pool)
    ours.update(ids, np.zeros(pool), np.full(pool, 1.0))
    trials = np.full(batch, 8.0)
    successes = np.full(batch, 4.0)

    def step():
        choice = ours.select(ids, batch)
        ours.update(choice.ids, successes, trials)

    return per_step_ms(step, steps)


def bench_numpy_beta(pool: int, steps: int) -> float:
    """numpy's own cost of ``pool`` Beta draws, the floor of any Thompson selection over the pool."""
    rng = np.random.default_rng(0)
    alpha = np.full(pool, 2.0)
    beta = np.full(pool, 3.0)
    return per_step_ms(lambda: rng.beta(alpha, beta), steps)


def state_round_trip(selector, prompts: int) -> dict[str, float]:
    """Bytes per prompt in memory and in the file, and save / load seconds, of ``selector``, which
    holds ``prompts`` prompts."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.npz"
        start = time.perf_counter()
        selector.save(path)
        save_s = time.perf_counter() - start
        file_bytes = path.stat().st_size
        start = time.perf_counter()
        loaded = type(selector).load(path)
        load_s = time.perf_counter() - start
    assert len(loaded) == prompts
    return {"bytes_per_prompt": selector.nbytes() / prompts, "file_bytes_per_prompt": file_bytes / prompts,
            "save_s": save_s, "load_s": load_s}


def bench_state(prompts: int, string_ids: bool) -> dict[str, float]:
    """Bytes per prompt in memory, and save / load seconds, of a ``prompts``-prompt MoPPS state."""
    keys = [f"math/{index}" for index in range(prompts)] if string_ids else np.arange(prompts)
    selector = MoPPS(seed=0)
    selector.update(keys, np.zeros(prompts), np.full(prompts, 8.0))
    return state_round_trip(selector, prompts)


def contextual_with_features(pool: int, dim: int, chunk: int = 100_000) -> ContextualMoPPS:
    """A ContextualMoPPS whose ``pool`` prompts (ids 0..pool-1) all have ``dim`` random features and
    have all been observed once (so every prompt has a fitted residual, as after the first epoch)."""
    rng = np.random.default_rng(0)
    selector = ContextualMoPPS(seed=0)
    for start in range(0, pool, chunk):
        ids = np.arange(start, min(pool, start + chunk))
        selector.add_features(ids, rng.standard_normal((len(ids), dim), dtype=np.float32))
    for start in range(0, pool, 4_096):
        ids = np.arange(start, min(pool, start + 4_096))
        selector.update(ids, rng.binomial(8, 0.5, len(ids)).astype(float), np.full(len(ids), 8.0))
    return selector


def bench_contextual_step(pool: int, n_candidates: int, batch: int, dim: int, steps: int) -> tuple[float, float]:
    """(ContextualMoPPS ms/step, MoPPS ms/step): select + update + policy tick with n = 8 rollouts, same inputs."""
    data_rng = np.random.default_rng(1)
    true_rate = data_rng.random(pool)
    contextual = contextual_with_features(pool, dim)
    mopps = MoPPS(seed=0)
    mopps.update(np.arange(pool), np.zeros(pool), np.full(pool, 1.0))
    trials = np.full(batch, 8.0)
    candidate_sets = [data_rng.choice(pool, n_candidates, replace=False) for _ in range(steps + 5)]

    def stepper(selector):
        position = iter(range(10**9))

        def step():
            choice = selector.select(candidate_sets[next(position) % len(candidate_sets)], batch)
            selector.update(choice.ids, np.round(true_rate[choice.ids] * 8), trials)
            selector.policy_updated()  # ContextualMoPPS moves its shared coefficients here

        return step

    return per_step_ms(stepper(contextual), steps), per_step_ms(stepper(mopps), steps)


def bench_contextual_state(prompts: int, dim: int) -> dict[str, float]:
    """Bytes per prompt in memory and in the file, and save / load seconds, of ContextualMoPPS."""
    return state_round_trip(contextual_with_features(prompts, dim), prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller pools and fewer steps")
    args = parser.parse_args()
    steps = 30 if args.quick else 200
    big = 1_000_000 if not args.quick else 200_000
    huge = 10_000_000 if not args.quick else 1_000_000

    ours_ms, reference_ms = bench_step(pool=40_000, n_candidates=4_096, batch=256, steps=steps)
    full_pool_ms = bench_full_pool(pool=big, batch=1_024, steps=max(steps // 10, 5))
    beta_ms = bench_numpy_beta(pool=big, steps=max(steps // 10, 5))
    int_state = bench_state(huge, string_ids=False)
    str_state = bench_state(huge, string_ids=True)
    contextual_ms, mopps_ms = bench_contextual_step(pool=40_000, n_candidates=4_096, batch=256, dim=64, steps=steps)
    contextual_pool = 1_000_000 if not args.quick else 100_000
    contextual_state = bench_contextual_state(contextual_pool, dim=64)

    rows = [
        ("select+update, B=256, 4,096 cand., 40k pool: mopps", f"{ours_ms:.3f} ms/step"),
        ("  same, dict-of-strings reference", f"{reference_ms:.3f} ms/step"),
        ("  ratio mopps / reference", f"{ours_ms / reference_ms:.3f}"),
        (f"full pool {big:,} prompts, B=1,024: mopps", f"{full_pool_ms:.1f} ms/step"),
        (f"  numpy Beta draws alone, {big:,}", f"{beta_ms:.1f} ms"),
        (f"state in memory, {huge:,} prompts, int ids", f"{int_state['bytes_per_prompt']:.1f} B/prompt"),
        ("  state file", f"{int_state['file_bytes_per_prompt']:.1f} B/prompt"),
        ("  save / load", f"{int_state['save_s']:.2f} s / {int_state['load_s']:.2f} s"),
        (f"state in memory, {huge:,} prompts, str ids", f"{str_state['bytes_per_prompt']:.1f} B/prompt (arrays; dict not counted)"),
        ("  state file", f"{str_state['file_bytes_per_prompt']:.1f} B/prompt"),
        ("  save / load", f"{str_state['save_s']:.2f} s / {str_state['load_s']:.2f} s"),
        ("ContextualMoPPS select+update, B=256, 4,096 cand., 40k pool, d=64", f"{contextual_ms:.3f} ms/step"),
        ("  MoPPS on the same steps", f"{mopps_ms:.3f} ms/step"),
        (f"  state in memory, {contextual_pool:,} prompts, d=64, int ids",
         f"{contextual_state['bytes_per_prompt']:.1f} B/prompt"),
        ("  state file", f"{contextual_state['file_bytes_per_prompt']:.1f} B/prompt"),
        ("  save / load", f"{contextual_state['save_s']:.2f} s / {contextual_state['load_s']:.2f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    key = "" if not args.quick else "quick_"
    print(json.dumps({
        "quick": args.quick,
        "step_ms": round(ours_ms, 4),
        "reference_step_ms": round(reference_ms, 4),
        "ratio_vs_reference": round(ours_ms / reference_ms, 4),
        f"{key}full_pool_1m_ms": round(full_pool_ms, 2),
        "numpy_beta_pool_ms": round(beta_ms, 2),
        "bytes_per_prompt": round(int_state["bytes_per_prompt"], 2),
        f"{key}save_10m_s": round(int_state["save_s"], 3),
        f"{key}load_10m_s": round(int_state["load_s"], 3),
        "string_ids_save_s": round(str_state["save_s"], 3),
        "string_ids_load_s": round(str_state["load_s"], 3),
        "contextual_step_ms": round(contextual_ms, 4),
        "contextual_mopps_step_ms": round(mopps_ms, 4),
        "contextual_bytes_per_prompt": round(contextual_state["bytes_per_prompt"], 2),
        "contextual_file_bytes_per_prompt": round(contextual_state["file_bytes_per_prompt"], 2),
        f"{key}contextual_save_1m_s": round(contextual_state["save_s"], 3),
        f"{key}contextual_load_1m_s": round(contextual_state["load_s"], 3),
    }))


if __name__ == "__main__":
    main()
