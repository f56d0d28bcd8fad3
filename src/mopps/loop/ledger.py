"""``PredictionLedger``: what was predicted for which chosen prompt at which step, until evidence comes.

A host may hand evidence back in any order and grouping, late, or several steps at once, so a
prediction is matched to evidence by prompt id: evidence for a prompt settles the OLDEST open
prediction of that prompt (a prompt chosen at steps 3 and 5 whose first evidence arrives settles
step 3's). A group split over several ``observe`` calls settles on its first part; later parts
find no open prediction and count as unpredicted. Open entries are arrays in the order they were
recorded; settling is vectorised (no per-prompt Python loop, no comparison of open entries
against the evidence's ids: ids are looked up once in an id index, then everything is integer
arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mopps.core.id_index import STR_KIND, IdLookup
from mopps.core.validation import check_saved_ids


class PredictionLedger:
    """Open predictions, in recording order: ``ids`` (n,) (a property), ``predicted`` float (n,)
    (NaN = the selector predicts nothing), ``step`` int64 (n,) the loop step that chose them.

    Internally each entry holds the slot of its id in an ``IdLookup`` over every id the ledger has
    seen, so settling costs integer array work plus one lookup per settled id, for str ids as for
    ints (no comparison of open entries against evidence ids).

    Open predictions do not expire: one whose prompt never gets evidence (a host that dropped a
    batch) stays open, is reported by ``mopps/open_predictions`` and is saved with the state. It
    costs memory and O(1) per entry in each ``settle``, nothing else.
    """

    def __init__(self) -> None:
        self.id_kind: str | None = None
        self._known: Any = np.zeros(0, dtype=np.int64)  # every id seen, slot order
        self._lookup = IdLookup()
        self.slots = np.zeros(0, dtype=np.int64)  # slot of each open entry's id
        self.predicted = np.zeros(0)
        self.step = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def ids(self) -> Any:
        """The open entries' prompt ids: int64 array (n,) or list of n str."""
        if self.id_kind == STR_KIND:
            known = self._known
            return [known[slot] for slot in self.slots.tolist()]
        return np.asarray(self._known, dtype=np.int64)[self.slots]

    def record(self, kind: str, ids, predicted: np.ndarray | None, step: int) -> None:
        """Open one prediction per chosen prompt: normalized, unique ``ids`` (k,), ``predicted``
        float (k,) or None, chosen at loop step ``step``."""
        predicted = np.full(len(ids), np.nan) if predicted is None else np.asarray(predicted, dtype=np.float64)
        if kind is None or len(ids) == 0:
            return
        if self.id_kind is None:
            self.id_kind = kind
            self._known = [] if kind == STR_KIND else np.zeros(0, dtype=np.int64)
        slots, self._known, _ = self._lookup.extend_ids(kind, self._known, ids)
        self.slots = np.concatenate([self.slots, slots])
        self.predicted = np.concatenate([self.predicted, predicted])
        self.step = np.concatenate([self.step, np.full(len(predicted), step, dtype=np.int64)])

    def entries(self) -> tuple:
        """The ledger's contents as they are now, for ``restore_entries`` (``SelectionLoop.atomic``).
        References, not copies: no method writes into these arrays or lists in place."""
        return self.id_kind, self._known, self.slots, self.predicted, self.step

    def restore_entries(self, entries: tuple) -> None:
        """Go back to what ``entries()`` returned (the id lookup rebuilds itself if the ids changed)."""
        self.id_kind, self._known, self.slots, self.predicted, self.step = entries

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
        query = self._lookup.index(kind, self._known).find(kind, ids)  # -1: never recorded
        known = query >= 0
        # Oldest open entry per slot: scatter positions in reverse, so the earliest write wins.
        oldest = np.full(len(self._known), -1, dtype=np.int64)
        oldest[self.slots[::-1]] = np.arange(len(self) - 1, -1, -1, dtype=np.int64)
        settled = np.full(len(ids), -1, dtype=np.int64)
        settled[known] = oldest[query[known]]
        found = settled >= 0
        predicted[found] = self.predicted[settled[found]]
        step[found] = self.step[settled[found]]
        keep = np.ones(len(self), dtype=bool)
        keep[settled[found]] = False
        self.slots, self.predicted, self.step = self.slots[keep], self.predicted[keep], self.step[keep]
        return found, predicted, step

    def state_dict(self) -> dict[str, Any]:
        """The open predictions as plain data (copies)."""
        return {"id_kind": self.id_kind, "ids": self.ids, "predicted": self.predicted.copy(), "step": self.step.copy()}

    @staticmethod
    def checked(state: dict[str, Any]) -> "PredictionLedger":
        """A ledger holding the saved ``state``; ``ValueError`` if it is inconsistent."""
        kind = state["id_kind"]
        # Open ids may repeat (a prompt chosen at two steps).
        ids = check_saved_ids(kind, state["ids"], "ledger ids", "ledger id_kind", unique=False)
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
        if kind is not None:
            # Distinct ids become the slots.
            ledger._known, ledger.slots = _distinct(kind, ids)
        ledger.predicted, ledger.step = predicted.copy(), step.astype(np.int64)
        return ledger


def _distinct(kind: str, ids) -> tuple[Any, np.ndarray]:
    """``(distinct ids in first-occurrence order, slot of each of ids int64 (n,))`` of normalized ``ids``."""
    if kind == STR_KIND:
        slot_of: dict[str, int] = {}
        slots = np.fromiter((slot_of.setdefault(value, len(slot_of)) for value in ids), dtype=np.int64,
                            count=len(ids))
        return list(slot_of), slots
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return unique[order].astype(np.int64), rank[inverse]


def sortable_ids(kind: str, ids) -> np.ndarray:
    """Normalized ids as an array numpy can sort and compare exactly (an object array for strings:
    numpy's fixed-width text type would drop trailing NULs)."""
    if kind == STR_KIND:
        keys = np.empty(len(ids), dtype=object)
        keys[:] = list(ids)
        return keys
    return np.asarray(ids, dtype=np.int64)

