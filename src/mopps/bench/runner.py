"""Runs every (method, seed) of a bench in worker processes, one torch thread each, with a progress bar.

The warm start is trained (or read from the cache) once in the parent before workers start, so two
workers never train it at the same time. Workers report finished steps through a queue; the parent
draws one bar over all steps of all runs.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from dataclasses import replace

from mopps.testbed.grpo import GRPOConfig

_PROGRESS = None  # in a worker: the parent's queue, one item per finished step


def _init_worker(progress) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker; the workers are the parallelism
    global _PROGRESS
    _PROGRESS = progress


def _run_job(job: tuple[GRPOConfig, str, int]) -> tuple[str, int, dict]:
    from mopps.testbed.grpo import run

    config, method, seed = job
    result = run(replace(config, seed=seed), method, on_step=lambda _: _PROGRESS.put(1))
    result["visits"] = result["visits"].tolist()
    return method, seed, result


def run_all(config: GRPOConfig, methods: list[str], seeds: list[int], workers: int = 2,
            show_progress: bool = True) -> dict[str, list[dict]]:
    """Every method under every seed: ``{method: [run result per seed, in seed order]}``.

    ``workers``: processes (each pinned to one torch thread); 1 runs everything in this process.
    """
    import torch
    from tqdm import tqdm

    from mopps.testbed.warmstart import load_warm_start

    torch.set_num_threads(1)
    load_warm_start(config.warm_start)
    jobs = [(config, method, seed) for method in methods for seed in seeds]
    bar = tqdm(total=len(jobs) * config.steps, unit="step", disable=not show_progress, smoothing=0.05)
    finished: dict[tuple[str, int], dict] = {}
    if workers <= 1:
        from mopps.testbed.grpo import run

        for method, seed in ((method, seed) for _, method, seed in jobs):
            bar.set_postfix_str(f"{method} seed {seed}")
            finished[method, seed] = run(replace(config, seed=seed), method, on_step=lambda _: bar.update(1))
            finished[method, seed]["visits"] = finished[method, seed]["visits"].tolist()
    else:
        context = multiprocessing.get_context("spawn")
        # Spawned workers read these when numpy loads: one BLAS thread each, as one torch thread (BLAS
        # threads of several workers spinning on the same cores make small matrix products far slower).
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")
        with context.Manager() as manager:
            progress = manager.Queue()
            with context.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(progress,)) as pool:
                pending = pool.map_async(_run_job, jobs, chunksize=1)
                while not pending.ready():
                    try:
                        bar.update(progress.get(timeout=0.5))
                    except queue.Empty:
                        continue
                for method, seed, result in pending.get():
                    finished[method, seed] = result
                while not progress.empty():
                    bar.update(progress.get())
    bar.close()
    return {method: [finished[method, seed] for seed in seeds] for method in methods}
