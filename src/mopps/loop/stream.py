"""``CandidateStream``: shuffled dataset positions, handed out a batch at a time, epoch after epoch.

Epoch semantics (the reference's candidate dataloader: shuffled, ``drop_last``): positions are drawn
without replacement within an epoch; when fewer than the requested count are left, the rest of the
epoch is skipped and the batch comes from the start of the next epoch. So one batch never holds a
position twice, and every batch of an epoch is a slice of that epoch's permutation.

The permutation of epoch ``e`` is a pure function of ``(seed, e)``: the generator seeded with
``SeedSequence(seed, spawn_key=(stream_key, e))``. Nothing of it is stored; the state is two integers
(``epoch``, ``offset``), the same on every process that uses the same seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mopps.core.validation import check_integer


class CandidateStream:
    """``num_rows``: positions 0 .. num_rows - 1 (>= 1). ``seed``: int >= 0. ``stream_key``: int >= 0
    that tells streams of one seed apart (``SelectionLoop`` uses 0 for candidates)."""

    def __init__(self, num_rows: int, seed: int, stream_key: int = 0) -> None:
        self.num_rows = check_integer(num_rows, "num_rows", minimum=1)
        self.seed = check_integer(seed, "seed")
        self.stream_key = check_integer(stream_key, "stream_key")
        self.epoch = 0
        self.offset = 0
        self._cached: tuple[int, np.ndarray] | None = None

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of epoch ``epoch``: int64 (num_rows,), a permutation of the positions."""
        if self._cached is None or self._cached[0] != epoch:
            sequence = np.random.SeedSequence(self.seed, spawn_key=(self.stream_key, epoch))
            self._cached = (epoch, np.random.default_rng(sequence).permutation(self.num_rows).astype(np.int64))
        return self._cached[1]

    def next(self, count: int) -> np.ndarray:
        """The next ``count`` distinct positions, int64 (count,); 1 <= count <= num_rows."""
        count = check_integer(count, "count", minimum=1)
        if count > self.num_rows:
            raise ValueError(f"count = {count} > num_rows = {self.num_rows}; a batch holds each position at most once")
        if self.offset + count > self.num_rows:
            self.epoch, self.offset = self.epoch + 1, 0
        positions = self.permutation(self.epoch)[self.offset:self.offset + count].copy()
        self.offset += count
        return positions

    def state_dict(self) -> dict[str, int]:
        """``num_rows``, ``seed``, ``stream_key`` (checked on load), ``epoch``, ``offset``."""
        return {"num_rows": self.num_rows, "seed": self.seed, "stream_key": self.stream_key,
                "epoch": self.epoch, "offset": self.offset}

    def checked_position(self, state: dict[str, Any]) -> tuple[int, int]:
        """``(epoch, offset)`` of a saved ``state``, validated against this stream; ``ValueError``
        naming the field if it was saved for other rows, another seed or is out of range."""
        for key in ("num_rows", "seed", "stream_key"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"the saved candidate stream has {key} = {state.get(key)!r} but this one has "
                                 f"{getattr(self, key)!r}; resume with the same dataset and seed")
        epoch = check_integer(state.get("epoch"), "stream epoch")
        offset = check_integer(state.get("offset"), "stream offset")
        if offset > self.num_rows:
            raise ValueError(f"stream offset = {offset} > num_rows = {self.num_rows}")
        return epoch, offset

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; on ``ValueError`` nothing changes."""
        self.epoch, self.offset = self.checked_position(state)
