"""Map prompt ids (non-negative integers or strings) to compact slots 0, 1, 2, ...

Slots are assigned in order of first insertion and never move, so per-prompt arrays indexed by slot
only ever grow at the end. Integer ids (verl's ``extra_info.index``, dataset row numbers) are looked
up without any Python loop: through a direct-address table ``slot_of_id`` while the ids are dense
(4 bytes per id up to the largest id), or through a sorted key array when they are sparse (hashes).
String ids go through a dict, which is a Python-level loop over the ids by nature; prefer integer
ids at scale.
"""

from __future__ import annotations

import numpy as np

INT_KIND = "int"
STR_KIND = "str"

# A direct-address table is used while largest_id + 1 <= max(_DENSE_FLOOR, _DENSE_FACTOR * count).
_DENSE_FLOOR = 1 << 22
_DENSE_FACTOR = 4


_INT64_MAX = np.iinfo(np.int64).max
_BOOL_TYPES = frozenset({bool, np.bool_})


def normalize_ids(ids, name: str):
    """Return ``(kind, ids)`` with ``ids`` an int64 array (kind "int") or a list of str (kind "str").

    Raises ``ValueError`` naming ``name`` and the first bad position for negative or too large
    integers (ids must fit in int64), booleans, floats, mixed kinds, or anything that is neither.
    An empty input has kind ``None``. Python sequences of strings are kept as they are (numpy's
    fixed-width text type would strip trailing NULs and pad every id to the longest).
    """
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of ids, not a single string")
    if not isinstance(ids, np.ndarray):
        values = ids if isinstance(ids, (list, tuple)) else list(ids)
        if len(values) == 0:
            return None, np.zeros(0, dtype=np.int64)
        if isinstance(values[0], str):
            return STR_KIND, _checked_python_ids(list(values), name)
        try:
            array = np.asarray(values)
        except OverflowError:
            array = np.asarray(values, dtype=object)
        # numpy reads [True, 2] as the integers [1, 2]; a bool is no id, so such input takes the
        # element-wise check, which names the first bool. One C-level pass over the element types.
        mixes_in_bools = array.dtype.kind in "iu" and not _BOOL_TYPES.isdisjoint(set(map(type, values)))
        if (array.dtype.kind not in "iu" or mixes_in_bools) and array.ndim == 1:
            array = np.asarray(_checked_python_ids(list(values), name), dtype=np.int64)
    else:
        array = ids
    if array.ndim != 1:
        if array.size == 0:
            return None, np.zeros(0, dtype=np.int64)
        raise ValueError(f"{name} must be one-dimensional; got shape {array.shape}")
    if array.size == 0:
        return None, np.zeros(0, dtype=np.int64)
    if array.dtype.kind in "iu":
        if array.dtype.kind == "u" and array.dtype.itemsize == 8 and (array > _INT64_MAX).any():
            position = int(np.argmax(array > _INT64_MAX))
            raise ValueError(f"{name}[{position}] = {array[position]}; integer ids must fit in int64")
        ids64 = array.astype(np.int64, copy=False)
        negative = ids64 < 0
        if negative.any():
            position = int(np.argmax(negative))
            raise ValueError(f"{name}[{position}] = {ids64[position]}; integer ids must be >= 0")
        return INT_KIND, ids64
    if array.dtype.kind in "UO":
        values = _checked_python_ids(array.tolist(), name)
        if isinstance(values[0], str):
            return STR_KIND, values
        return INT_KIND, np.asarray(values, dtype=np.int64)
    raise ValueError(
        f"{name} has dtype {array.dtype}; ids must be non-negative integers or strings"
    )


def _checked_python_ids(values: list, name: str) -> list:
    """``values`` if all are str, or all are ints in [0, 2**63); else ValueError naming the position."""
    first_is_str = isinstance(values[0], str)
    for position, value in enumerate(values):
        if isinstance(value, str) != first_is_str:
            raise ValueError(f"{name}[{position}] = {value!r}; {name} mixes integer and string ids")
        if first_is_str:
            continue
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}[{position}] = {value!r}; ids must be non-negative integers or strings")
        if not 0 <= int(value) <= _INT64_MAX:
            raise ValueError(f"{name}[{position}] = {value}; integer ids must lie in [0, 2**63 - 1]")
    return values


def require_unique(kind: str | None, ids, located) -> None:
    """Raise ``ValueError`` at the first id of ``ids`` (normalized, of ``kind``) that occurred
    earlier: "``located(position)`` = value occurs earlier too; ids must be unique".
    ``located``: position -> where it is, e.g. ``lambda i: f"ids[{i}]"`` or ``f"row {i}: prompt_id"``."""
    position = first_duplicate(kind, ids)
    if position >= 0:
        value = ids[position] if kind == STR_KIND else int(ids[position])
        raise ValueError(f"{located(position)} = {value!r} occurs earlier too; ids must be unique")


def check_same_kind(kind: str | None, held: str | None, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ids of ``kind`` cannot join ids of kind ``held`` (a
    selector or an index holds one kind; None, before any id or for no ids, joins anything)."""
    if kind is not None and held is not None and kind != held:
        raise ValueError(f"{name} holds {kind} ids but this selector already holds {held} ids; "
                         "use one id kind per selector")


def first_duplicate(kind: str | None, ids) -> int:
    """Position of the first id that already occurred earlier in ``ids``, or -1 if all are unique."""
    if kind is None or len(ids) < 2:
        return -1
    if kind == STR_KIND:
        if len(set(ids)) == len(ids):
            return -1
        seen: set[str] = set()
        for position, value in enumerate(ids):
            if value in seen:
                return position
            seen.add(value)
        return -1
    largest = int(ids.max())
    if largest < 64 * len(ids) + 4096:
        # Fast "all unique?" test: mark each id in a bool table; fewer marks than ids means a repeat.
        # The table is at most ~64 entries per id, so counting it stays O(len(ids)).
        marks = np.zeros(largest + 1, dtype=np.bool_)
        marks[ids] = True
        if np.count_nonzero(marks) == len(ids):
            return -1
    positions = np.arange(len(ids), dtype=np.int32)
    if largest < max(1 << 24, 8 * len(ids)):
        # Scatter positions into a table indexed by id: for a repeated id the earliest position wins
        # (reversed write order), so any later position that does not read itself back is a repeat.
        # np.empty touches only the pages that are written, so this is O(len(ids)).
        table = np.empty(largest + 1, dtype=np.int32)
        table[ids[::-1]] = positions[::-1]
        repeated = table[ids] != positions
    else:
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        repeated = np.zeros(len(ids), dtype=bool)
        repeated[order[1:]] = sorted_ids[1:] == sorted_ids[:-1]
    if not repeated.any():
        return -1
    return int(np.argmax(repeated))


class IdIndex:
    """A growing map from prompt ids to slots. The id kind is fixed by the first insertion."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self._count = 0
        # Integer ids: either a direct-address table or sorted keys with their slots.
        self._slot_of_id = np.full(0, -1, dtype=np.int32)
        self._sorted_keys: np.ndarray | None = None
        self._sorted_slots: np.ndarray | None = None
        self._largest = -1  # largest integer id inserted
        # String ids (a dict keeps insertion order, which is slot order).
        self._slot_of_str: dict[str, int] = {}

    def __len__(self) -> int:
        return self._count

    def check_kind(self, kind: str | None, name: str) -> None:
        """Raise if ids of ``kind`` cannot live in this index."""
        check_same_kind(kind, self.kind, name)

    def find(self, kind: str | None, ids) -> np.ndarray:
        """Slots of normalized ``ids`` as an integer array (m,), -1 where an id is unknown."""
        if kind is None or self.kind is None:
            return np.full(len(ids), -1, dtype=np.int64)
        if kind == STR_KIND:
            get = self._slot_of_str.get
            return np.fromiter((get(value, -1) for value in ids), dtype=np.int64, count=len(ids))
        if self._sorted_keys is None:
            slots = np.full(len(ids), -1, dtype=np.int64)
            inside = ids < len(self._slot_of_id)
            if inside.all():
                return np.take(self._slot_of_id, ids)
            slots[inside] = self._slot_of_id[ids[inside]]
            return slots
        positions = np.searchsorted(self._sorted_keys, ids)
        positions = np.minimum(positions, len(self._sorted_keys) - 1)
        hit = self._sorted_keys[positions] == ids
        return np.where(hit, self._sorted_slots[positions], -1).astype(np.int64)

    def insert(self, kind: str | None, ids) -> np.ndarray:
        """Slots of normalized, unique ``ids``, creating slots for unknown ones (in order)."""
        if kind is None:
            return np.zeros(0, dtype=np.int64)
        self.check_kind(kind, "ids")
        self.kind = kind
        slots = self.find(kind, ids)
        missing = slots < 0
        n_new = int(missing.sum())
        if n_new == 0:
            return slots
        new_slots = np.arange(self._count, self._count + n_new, dtype=np.int64)
        slots[missing] = new_slots
        if kind == STR_KIND:
            new_ids = [value for value, is_new in zip(ids, missing) if is_new]
            self._slot_of_str.update(zip(new_ids, new_slots.tolist()))
        else:
            self._insert_ints(ids[missing], new_slots)
        self._count += n_new
        return slots

    def _insert_ints(self, new_ids: np.ndarray, new_slots: np.ndarray) -> None:
        largest = self._largest = max(self._largest, int(new_ids.max()))
        dense_ok = largest + 1 <= max(_DENSE_FLOOR, _DENSE_FACTOR * (self._count + len(new_ids)))
        if self._sorted_keys is None and dense_ok:
            if largest >= len(self._slot_of_id):
                grown = np.full(max(largest + 1, 2 * len(self._slot_of_id)), -1, dtype=np.int32)
                grown[: len(self._slot_of_id)] = self._slot_of_id
                self._slot_of_id = grown
            self._slot_of_id[new_ids] = new_slots
            return
        # Sparse ids: keep (or switch to) sorted keys; the direct-address table is dropped.
        if self._sorted_keys is None:
            # The dense table lists the known ids in sorted order already: flatnonzero of its slots.
            known = np.flatnonzero(self._slot_of_id >= 0)
            keys = np.concatenate([known, new_ids])
            slots = np.concatenate([self._slot_of_id[known].astype(np.int64), new_slots])
            order = np.argsort(keys, kind="stable")
            self._slot_of_id = np.full(0, -1, dtype=np.int32)
            self._sorted_keys = keys[order].astype(np.int64)
            self._sorted_slots = slots[order]
            return
        # Merge the new keys into the sorted ones: O(N) instead of re-sorting everything.
        order = np.argsort(new_ids, kind="stable")
        positions = np.searchsorted(self._sorted_keys, new_ids[order])
        self._sorted_keys = np.insert(self._sorted_keys, positions, new_ids[order])
        self._sorted_slots = np.insert(self._sorted_slots, positions, new_slots[order])

    def nbytes(self) -> int:
        """Bytes held by the index's arrays (the dict of string ids is not counted)."""
        total = self._slot_of_id.nbytes
        if self._sorted_keys is not None:
            total += self._sorted_keys.nbytes + self._sorted_slots.nbytes
        return total

    @classmethod
    def from_ids(cls, kind: str | None, ids) -> "IdIndex":
        """Rebuild an index whose slot order is the order of ``ids`` (unique)."""
        index = cls()
        if kind is not None and len(ids):
            index.insert(kind, ids)
        return index


class IdLookup:
    """The ``IdIndex`` of a record's ids, rebuilt only when the record's ids object changes.

    Records are immutable tuples, so "the ids object changed" means "another record": a loaded state
    gets a fresh index; records grown by ``extend_ids`` keep theirs (it was grown in step).
    """

    def __init__(self) -> None:
        self._ids: Any = None
        self._index = IdIndex()

    def index(self, kind: str | None, ids) -> IdIndex:
        """The index of ``ids`` (kind ``kind``); slots are positions in ``ids``."""
        if ids is not self._ids:
            self._index = IdIndex.from_ids(kind, ids)
            self._ids = ids
        return self._index

    def extend_ids(self, kind: str, known_ids, ids) -> tuple[np.ndarray, Any, int]:
        """Slots of normalized, unique ``ids`` among ``known_ids`` (kind ``kind``), unknown ones appended.

        Returns ``(slots (m,), ids_after, n_new)``: ``ids_after`` is ``known_ids`` followed by the
        unknown ids in order (a new object when ``n_new > 0``, else ``known_ids`` itself).
        """
        index = self.index(kind, known_ids)
        index.check_kind(kind, "ids")
        before = len(index)
        slots = index.insert(kind, ids)
        added = slots >= before
        n_new = int(added.sum())
        if n_new == 0:
            return slots, known_ids, 0
        order = np.argsort(slots[added], kind="stable")
        if kind == STR_KIND:
            new = [ids[position] for position in np.flatnonzero(added)[order]]
            ids_after = list(known_ids) + new
        else:
            ids_after = np.concatenate([np.asarray(known_ids, dtype=np.int64), ids[added][order]])
        self._ids = ids_after
        return slots, ids_after, n_new
