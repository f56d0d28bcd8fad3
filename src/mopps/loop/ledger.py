"""``PredictionLedger``: what was predicted for which chosen prompt at which step, until evidence comes.

A host may hand evidence back in any order and grouping, late, or several steps at once, so a
prediction is matched to evidence by prompt id: evidence for a prompt settles the OLDEST open
prediction of that prompt (a prompt chosen at steps 3 and 5 whose first evidence arrives settles
step 3's). A group split over several ``observe`` calls settles on its first part; later parts
find no open prediction and count as unpredicted. Open entries are arrays in the order they were
recorded; settling is vectorised (no per-prompt Python loop).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mopps.core.id_index import STR_KIND, normalize_ids


class PredictionLedger:
    """Open predictions: ``ids`` (n,), ``predicted`` float (n,) (NaN = the selector predicts
    nothing), ``step`` int64 (n,) the loop step that chose them, in recording order."""

    def __init__(self) -> None:
        self.id_kind: str | None = None
        self.ids: Any = np.zeros(0, dtype=np.int64)
        self.predicted = np.zeros(0)
        self.step = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.predicted)

    def record(self, kind: str, ids, predicted: np.ndarray | None, step: int) -> None:
        """Open one prediction per chosen prompt: normalized ``ids`` (k,), ``predicted`` float (k,)
        or None, chosen at loop step ``step``."""
        predicted = np.full(len(ids), np.nan) if predicted is None else np.asarray(predicted, dtype=np.float64)
        if self.id_kind is None:
            self.id_kind = kind
            self.ids = list(ids) if kind == STR_KIND else np.asarray(ids, dtype=np.int64).copy()
        elif kind == STR_KIND:
            self.ids = self.ids + list(ids)
        else:
            self.ids = np.concatenate([self.ids, ids])
        self.predicted = np.concatenate([self.predicted, predicted])
        self.step = np.concatenate([self.step, np.full(len(predicted), step, dtype=np.int64)])

    def truncate(self, length: int) -> None:
        """Drop the open predictions recorded after the first ``length`` (undoes ``record`` calls
        when nothing was settled since: ``Refill`` undoing a failed round)."""
        self.ids = self.ids[:length]
        self.predicted = self.predicted[:length]
        self.step = self.step[:length]

    def settle(self, kind, ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Close the oldest open prediction of each of the unique, normalized ``ids`` (m,).

        Returns ``(found bool (m,), predicted float (m,), step int64 (m,))``, aligned with ``ids``;
        where nothing was open, found is False, predicted NaN and step -1.
        """
        found = np.zeros(len(ids), dtype=bool)
        predicted = np.full(len(ids), np.nan)
        step = np.full(len(ids), -1, dtype=np.int64)
        if kind is None or len(self) == 0 or kind != self.id_kind:
            return found, predicted, step
        keys = sortable_ids(kind, self.ids)
        query = sortable_ids(kind, ids)
        open_positions = np.flatnonzero(np.isin(keys, query))
        # Entries are in recording order, so the first occurrence of an id is its oldest prediction.
        unique, first = np.unique(keys[open_positions], return_index=True)
        settled = open_positions[first]
        where = np.searchsorted(unique, query)
        found = where < len(unique)
        found[found] = unique[where[found]] == query[found]
        predicted[found] = self.predicted[settled[where[found]]]
        step[found] = self.step[settled[where[found]]]
        keep = np.ones(len(self), dtype=bool)
        keep[settled] = False
        self.ids = [value for value, kept in zip(self.ids, keep.tolist()) if kept] if kind == STR_KIND \
            else self.ids[keep]
        self.predicted = self.predicted[keep]
        self.step = self.step[keep]
        return found, predicted, step

    def state_dict(self) -> dict[str, Any]:
        """The open predictions as plain data (copies)."""
        ids = list(self.ids) if self.id_kind == STR_KIND else self.ids.copy()
        return {"id_kind": self.id_kind, "ids": ids, "predicted": self.predicted.copy(), "step": self.step.copy()}

    @staticmethod
    def checked(state: dict[str, Any]) -> "PredictionLedger":
        """A ledger holding the saved ``state``; ``ValueError`` if it is inconsistent."""
        kind = state["id_kind"]
        if kind not in (None, "int", "str"):
            raise ValueError(f"ledger id_kind = {kind!r}; it must be None, 'int' or 'str'")
        stored_kind, ids = normalize_ids(state["ids"], "ledger ids")
        if stored_kind not in (None, kind) or (kind is None and len(ids)):
            raise ValueError(f"ledger id_kind = {kind!r} but its ids are {stored_kind}")
        predicted = np.asarray(state["predicted"], dtype=np.float64)
        step = np.asarray(state["step"])
        if step.dtype.kind not in "iu" or (step < 1).any():
            raise ValueError("ledger steps must be integers >= 1")
        if not (predicted.ndim == step.ndim == 1 and len(predicted) == len(step) == len(ids)):
            raise ValueError("ledger ids, predicted and step differ in length")
        finite = predicted[~np.isnan(predicted)]
        if ((finite < 0.0) | (finite > 1.0)).any():
            raise ValueError("ledger predictions must lie in [0, 1] (or be NaN)")
        ledger = PredictionLedger()
        ledger.id_kind = kind
        ledger.ids = list(ids) if kind == STR_KIND else np.asarray(ids, dtype=np.int64)
        ledger.predicted, ledger.step = predicted.copy(), step.astype(np.int64)
        return ledger


def sortable_ids(kind: str, ids) -> np.ndarray:
    """Normalized ids as an array numpy can sort and compare exactly (an object array for strings:
    numpy's fixed-width text type would drop trailing NULs)."""
    if kind == STR_KIND:
        keys = np.empty(len(ids), dtype=object)
        keys[:] = list(ids)
        return keys
    return np.asarray(ids, dtype=np.int64)

