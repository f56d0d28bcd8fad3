"""The per-prompt Beta posterior table: ids -> (alpha, beta), with a scalar or per-prompt prior.

Entries are created when a prompt is first observed (or given an offline prior); a prompt never
observed reports the prior. Arrays are indexed by the slots of an ``IdIndex`` and grow at the end.
Memory: 16 bytes per prompt for (alpha, beta), 16 more once any per-prompt prior is set, plus the
index (8 bytes of id per prompt, and 4 bytes per id value below the largest id for dense int ids).
"""

from __future__ import annotations

import numpy as np

from mopps.core.id_index import IdIndex
from mopps.core.posterior import discounted_update


class PosteriorTable:
    """Beta(alpha, beta) per prompt; ``prior_alpha``/``prior_beta`` are the scalar defaults (> 0)."""

    def __init__(self, prior_alpha: float, prior_beta: float) -> None:
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.index = IdIndex()
        self._alpha = np.zeros(0)
        self._beta = np.zeros(0)
        self._prompt_prior_alpha: np.ndarray | None = None
        self._prompt_prior_beta: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    # -- reading ---------------------------------------------------------------------------------

    def gather(self, kind, ids) -> tuple[np.ndarray, np.ndarray]:
        """``(alpha, beta)`` float arrays (m,) for normalized ``ids``; unknown ids get the prior."""
        slots = self.index.find(kind, ids)
        count = len(self.index)
        alpha = self._alpha[:count]
        beta = self._beta[:count]
        if len(slots) and slots.min() >= 0:
            return np.take(alpha, slots), np.take(beta, slots)
        known = slots >= 0
        safe = np.where(known, slots, 0)
        if count == 0:
            return (np.full(len(slots), self.prior_alpha), np.full(len(slots), self.prior_beta))
        return (np.where(known, alpha[safe], self.prior_alpha),
                np.where(known, beta[safe], self.prior_beta))

    def prior_of(self, slots: np.ndarray) -> tuple[np.ndarray | float, np.ndarray | float]:
        """Prior (alpha0, beta0) of existing ``slots``: arrays if per-prompt priors exist, else scalars."""
        if self._prompt_prior_alpha is None:
            return self.prior_alpha, self.prior_beta
        return self._prompt_prior_alpha[slots], self._prompt_prior_beta[slots]

    # -- writing ---------------------------------------------------------------------------------

    def _create(self, kind, ids) -> np.ndarray:
        slots = self.index.insert(kind, ids)
        count = len(self.index)
        old = len(self._alpha)
        if count > old:
            capacity = max(count, 2 * old, 16)
            self._alpha = _grow(self._alpha, capacity, self.prior_alpha)
            self._beta = _grow(self._beta, capacity, self.prior_beta)
            if self._prompt_prior_alpha is not None:
                self._prompt_prior_alpha = _grow(self._prompt_prior_alpha, capacity, self.prior_alpha)
                self._prompt_prior_beta = _grow(self._prompt_prior_beta, capacity, self.prior_beta)
        return slots

    def observe(self, kind, ids, successes: np.ndarray, trials: np.ndarray, discount: float) -> None:
        """Apply the discounted update to unique, normalized ``ids`` (validated evidence)."""
        slots = self._create(kind, ids)
        prior_alpha, prior_beta = self.prior_of(slots)
        self._alpha[slots], self._beta[slots] = discounted_update(
            self._alpha[slots], self._beta[slots], successes, trials, discount, prior_alpha, prior_beta
        )

    def assign(self, kind, ids, alpha: np.ndarray, beta: np.ndarray, as_prior: bool) -> None:
        """Set the posterior of unique ``ids``; with ``as_prior`` also make it their prior."""
        slots = self._create(kind, ids)
        self._alpha[slots] = alpha
        self._beta[slots] = beta
        if as_prior:
            if self._prompt_prior_alpha is None:
                self._prompt_prior_alpha = np.full(len(self._alpha), self.prior_alpha)
                self._prompt_prior_beta = np.full(len(self._beta), self.prior_beta)
            self._prompt_prior_alpha[slots] = alpha
            self._prompt_prior_beta[slots] = beta

    # -- state -----------------------------------------------------------------------------------

    def arrays(self) -> dict[str, object]:
        """The table as plain arrays in slot order (copies): ids, alpha, beta[, prompt priors]."""
        count = len(self.index)
        arrays: dict[str, object] = {
            "ids": self.index.ids(),
            "alpha": self._alpha[:count].copy(),
            "beta": self._beta[:count].copy(),
        }
        if self._prompt_prior_alpha is not None:
            arrays["prompt_prior_alpha"] = self._prompt_prior_alpha[:count].copy()
            arrays["prompt_prior_beta"] = self._prompt_prior_beta[:count].copy()
        return arrays

    @classmethod
    def from_arrays(cls, prior_alpha: float, prior_beta: float, kind, arrays: dict) -> "PosteriorTable":
        """Inverse of ``arrays``; ``kind`` is the id kind ("int", "str" or None when empty)."""
        table = cls(prior_alpha, prior_beta)
        ids = arrays["ids"]
        table.index = IdIndex.from_ids(kind, ids)
        table._alpha = np.array(arrays["alpha"], dtype=np.float64)
        table._beta = np.array(arrays["beta"], dtype=np.float64)
        if "prompt_prior_alpha" in arrays:
            table._prompt_prior_alpha = np.array(arrays["prompt_prior_alpha"], dtype=np.float64)
            table._prompt_prior_beta = np.array(arrays["prompt_prior_beta"], dtype=np.float64)
        return table

    def nbytes(self) -> int:
        """Bytes of array memory held (ids of string kind not counted)."""
        total = self._alpha.nbytes + self._beta.nbytes + self.index.nbytes()
        if self._prompt_prior_alpha is not None:
            total += self._prompt_prior_alpha.nbytes + self._prompt_prior_beta.nbytes
        return total


def _grow(array: np.ndarray, capacity: int, fill: float) -> np.ndarray:
    grown = np.full(capacity, fill, dtype=np.float64)
    grown[: len(array)] = array
    return grown
