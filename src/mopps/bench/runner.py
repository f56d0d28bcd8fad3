"""Runs every (config, method, seed) job of a bench in worker processes, one torch thread each, with
progress that a person can read: a bar on a terminal, one plain line every few seconds in a log.

Warm starts are trained (or read from the cache) once in the parent before workers start, so two
workers never train the same one at the same time. Workers report finished steps through a queue;
the parent reports progress over all steps of all runs.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, TextIO

from mopps.testbed.grpo import TestbedConfig

_PROGRESS = None  # in a worker: the parent's queue, one item per finished step
LOG_INTERVAL_S = 5.0  # seconds between progress lines when the output is not a terminal

Job = tuple[TestbedConfig, str, int, "Path | None"]  # (config, method, seed, evidence log path or None)


def evidence_log_path(folder: Path, method: str, seed: int) -> Path:
    """Where a run's evidence log goes under ``folder``: ``<method>-seed<seed>.npz`` (':' of an
    instrument's name written as '_')."""
    return Path(folder) / f"{method.replace(':', '_')}-seed{seed}.npz"


class LineProgress:
    """Progress as plain lines for logs, at most one every ``interval`` seconds, no carriage returns:
    ``bench: 1,200/2,800 steps (43%), 2m10s elapsed, about 2m50s left``. Takes tqdm's calls."""

    def __init__(self, total: int, stream: TextIO, interval: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.stream, self.interval, self.clock = total, stream, interval, clock
        self.done, self.postfix = 0, ""
        self.start = self.last = clock()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.clock() - self.last >= self.interval:
            self._write()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        if self.done:
            self._write()

    def _write(self) -> None:
        now = self.clock()
        self.last = now
        elapsed = now - self.start
        line = f"bench: {self.done:,}/{self.total:,} steps ({100 * self.done / max(self.total, 1):.0f}%), " \
               f"{_duration(elapsed)} elapsed"
        if 0 < self.done < self.total:
            line += f", about {_duration(elapsed * (self.total - self.done) / self.done)} left"
        if self.postfix:
            line += f" ({self.postfix})"
        print(line, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def progress_bar(total: int, show: bool, stream: TextIO | None = None):
    """A tqdm bar on a terminal, ``LineProgress`` otherwise, a silent tqdm when ``show`` is False."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if show and not stream.isatty():
        return LineProgress(total, stream)
    return tqdm(total=total, unit="step", disable=not show, smoothing=0.05, file=stream)


def _init_worker(progress) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker; the workers are the parallelism
    global _PROGRESS
    _PROGRESS = progress


def _plain(result: dict) -> dict:
    """A run's result with numpy arrays as lists (JSON-able, cheap to pickle back)."""
    return {key: value.tolist() if hasattr(value, "tolist") else value for key, value in result.items()}


def _run_job(job: Job) -> dict:
    from mopps.testbed.grpo import run

    config, method, seed, log = job
    return _plain(run(replace(config, seed=seed), method, on_step=lambda _: _PROGRESS.put(1), evidence_log=log))


def run_jobs(jobs: list[Job], workers: int = 2, show_progress: bool = True) -> list[dict]:
    """The result of every job, in job order. ``workers``: processes (each pinned to one torch
    thread); 1 runs everything in this process."""
    import torch

    from mopps.testbed.warmstart import load_warm_start

    torch.set_num_threads(1)
    for warm_start in {config.warm_start.key(): config.warm_start for config, *_ in jobs}.values():
        load_warm_start(warm_start)
    bar = progress_bar(sum(config.steps for config, *_ in jobs), show_progress)
    if workers <= 1:
        from mopps.testbed.grpo import run

        results = []
        for config, method, seed, log in jobs:
            bar.set_postfix_str(f"{method} seed {seed}")
            results.append(_plain(run(replace(config, seed=seed), method, on_step=lambda _: bar.update(1),
                                      evidence_log=log)))
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
                results = pending.get()
                while not progress.empty():
                    bar.update(progress.get())
    bar.close()
    return results


def run_all(config: TestbedConfig, methods: list[str], seeds: list[int], workers: int = 2,
            show_progress: bool = True, log_dir: Path | None = None) -> dict[str, list[dict]]:
    """Every method under every seed: ``{method: [run result per seed, in seed order]}``; with
    ``log_dir``, each run's evidence log is written there (``evidence_log_path``)."""
    jobs = [(config, method, seed, None if log_dir is None else evidence_log_path(log_dir, method, seed))
            for method in methods for seed in seeds]
    results = iter(run_jobs(jobs, workers, show_progress))
    return {method: [next(results) for _ in seeds] for method in methods}
