"""The candidate pool of each generation: shuffled dataset rows, ``size`` at a time.

This is the reference's candidate dataloader (batch size ``ts_ratio * B``, shuffled, ``drop_last``):
rows are drawn without replacement within an epoch; when fewer than ``size`` rows are left, they are
skipped and a new epoch starts with a fresh permutation. The permutation of epoch ``e`` is a pure
function of ``(seed, e)``, so the saved state is four integers and every process draws the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CandidateStream:
    """Hands out ``size`` dataset row positions per call of ``next``.

    ``num_rows``: rows in the training dataset (>= 1). ``size``: candidates per generation,
    1 <= size <= num_rows. ``seed``: int >= 0, the same on every process.
    """

    def __init__(self, num_rows: int, size: int, seed: int) -> None:
        if num_rows < 1:
            raise ValueError(f"num_rows = {num_rows}; the training dataset must have at least one row")
        if not 1 <= size <= num_rows:
            raise ValueError(f"size = {size}; size must lie in [1, num_rows = {num_rows}]")
        if seed < 0:
            raise ValueError(f"seed = {seed}; seed must be >= 0")
        self.num_rows = int(num_rows)
        self.size = int(size)
        self.seed = int(seed)
        self.epoch = 0
        self.offset = 0
        self._permutation_cache: tuple[int, np.ndarray] | None = None

    def next(self) -> np.ndarray:
        """The next ``size`` row positions, int64 array (size,), distinct."""
        if self.offset + self.size > self.num_rows:
            self.epoch += 1
            self.offset = 0
        positions = self._permutation()[self.offset:self.offset + self.size]
        self.offset += self.size
        return positions.copy()

    def _permutation(self) -> np.ndarray:
        if self._permutation_cache is None or self._permutation_cache[0] != self.epoch:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_rows)
            self._permutation_cache = (self.epoch, order.astype(np.int64))
        return self._permutation_cache[1]

    def state_dict(self) -> dict[str, int]:
        """JSON-serializable state: ``num_rows``, ``size``, ``seed``, ``epoch``, ``offset``."""
        return {"num_rows": self.num_rows, "size": self.size, "seed": self.seed,
                "epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; raises ``ValueError`` (state unchanged) if it was written for a
        different dataset size, candidate count or seed."""
        for key in ("num_rows", "size", "seed"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"saved candidate stream has {key} = {state.get(key)!r} but this run has "
                    f"{key} = {getattr(self, key)!r}; resume with the same dataset, ts_ratio, seed and "
                    "generation_batch_size // num_generations (size = round(ts_ratio x prompts per generation))"
                )
        epoch, offset = int(state["epoch"]), int(state["offset"])
        if epoch < 0 or not 0 <= offset <= self.num_rows:
            raise ValueError(f"saved candidate stream has epoch = {epoch}, offset = {offset}; out of range")
        self.epoch, self.offset = epoch, offset
