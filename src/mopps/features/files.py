"""Feature files: one float32 matrix of per-prompt features keyed by prompt id, readable with numpy.

Format ``mopps.features`` version 1, an uncompressed ``.npz`` (a zip of ``.npy`` members, each
CRC-checked by numpy on read):

- ``__meta__``: uint8 bytes of a UTF-8 JSON object with ``format`` = ``"mopps.features"``,
  ``version`` = 1, ``count`` (m), ``dimension`` (d), ``id_kind`` (``"int"`` or ``"str"``),
  ``source`` (what made the features: ``"embedding"``, ``"columns"``, or your own word), ``model``
  and ``pooling`` (null where they do not apply), and whatever else the writer recorded
  (layer, projection, column names, standardisation statistics ...);
- ``features``: float32 (m, d), row i belongs to prompt ``ids[i]``;
- integer ids: ``ids``, int64 (m,), each >= 0; string ids: ``ids.utf8`` (uint8, the UTF-8 bytes
  of all ids concatenated) and ``ids.offsets`` (int64 (m + 1,), id i is bytes
  ``offsets[i]:offsets[i+1]``).

Ids are unique, every feature is finite, m >= 1 and d >= 1. On disk a prompt costs 4 * d bytes
plus 8 (integer id) or 8 + its UTF-8 length (string id); the zip adds a few hundred bytes per file.

Why ``.npz`` and not parquet: reading needs numpy alone (the core dependency), a float32 matrix is
stored as one contiguous block that loads in a single read, and the zip's per-member CRC catches
torn or corrupt files. Parquet would need pyarrow to read and stores a matrix as a list column.

Writes go through `mopps.storage.atomic_write` (temporary file in the same folder, fsync, rename over the
target, fsync of the folder), so a crash leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mopps.core.id_index import INT_KIND, normalize_ids, require_unique
from mopps.core.validation import check_header
from mopps.storage import atomic_write

FEATURES_FORMAT = "mopps.features"
FEATURES_VERSION = 1

_META = "__meta__"
_MATRIX = "features"
_WRITER_KEYS = ("format", "version", "count", "dimension", "id_kind")


class Features(NamedTuple):
    """Per-prompt features as read from a file: unpacks as ``ids, X, meta = load_features(path)``.

    ``ids``: int64 array (m,) or list of m str, unique. ``X``: float32 array (m, d), finite; row i
    belongs to ``ids[i]``. ``meta``: the file's metadata (see the module docstring).
    """

    ids: Any
    X: np.ndarray
    meta: dict


def check_features(ids, X) -> tuple[str, Any, np.ndarray]:
    """Validate a feature set; returns ``(id_kind, ids, X)`` with ``X`` as C-ordered float32.

    ``ids``: m unique prompt ids, non-negative integers or strings. ``X``: numbers, shape (m, d),
    finite after conversion to float32, m >= 1, d >= 1. Raises ``ValueError`` naming the argument
    and the first bad position.
    """
    kind, ids = normalize_ids(ids, "ids")
    if kind is None:
        raise ValueError("ids is empty; a feature set needs at least one prompt")
    require_unique(kind, ids, lambda position: f"ids[{position}]")
    try:
        # Values beyond float32's range become inf here and are reported as such just below.
        with np.errstate(over="ignore"):
            matrix = np.ascontiguousarray(X, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"X must be numbers; could not convert: {error}") from None
    if matrix.ndim != 2 or matrix.shape[1] < 1:
        raise ValueError(f"X must have shape (m, d) with d >= 1; got shape {matrix.shape}")
    if matrix.shape[0] != len(ids):
        raise ValueError(f"len(ids) = {len(ids)} but X has {matrix.shape[0]} rows; they must be equal")
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        column = int(np.argmin(np.isfinite(matrix[row])))
        raise ValueError(
            f"X[{row}, {column}] = {matrix[row, column]} (as float32); features must be finite"
        )
    return kind, ids, matrix


def save_features(path, ids, X, meta: dict) -> Path:
    """Write a feature file atomically; returns its path.

    ``ids``: m unique prompt ids (non-negative ints or strs). ``X``: numbers (m, d), stored as
    float32. ``meta``: JSON-serialisable dict with at least ``source`` (a non-empty str); the keys
    ``format``, ``version``, ``count``, ``id_kind`` are written by this function and may not be
    given, ``dimension`` may be given only if it equals d. ``model`` and ``pooling`` default to null.
    Raises ``ValueError`` for bad input before anything is written.
    """
    kind, ids, matrix = check_features(ids, X)
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict; got {type(meta).__name__}")
    if not isinstance(meta.get("source"), str) or not meta["source"]:
        raise ValueError(f"meta['source'] = {meta.get('source')!r}; say what made the features (a non-empty str)")
    reserved = [key for key in ("format", "version", "count", "id_kind") if key in meta]
    if reserved:
        raise ValueError(f"meta sets {reserved}; save_features writes these itself")
    if "dimension" in meta and meta["dimension"] != matrix.shape[1]:
        raise ValueError(f"meta['dimension'] = {meta['dimension']!r} but X has {matrix.shape[1]} columns")
    header = {"format": FEATURES_FORMAT, "version": FEATURES_VERSION, "count": int(matrix.shape[0]),
              "dimension": int(matrix.shape[1]), "id_kind": kind, "model": None, "pooling": None}
    header.update({key: value for key, value in meta.items() if key != "dimension"})
    try:
        encoded_meta = json.dumps(header, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise ValueError(f"meta must be JSON-serialisable: {error}") from None

    payload = {_META: np.frombuffer(encoded_meta, dtype=np.uint8), _MATRIX: matrix}
    if kind == INT_KIND:
        payload["ids"] = ids
    else:
        encoded = [item.encode("utf-8") for item in ids]
        lengths = np.fromiter((len(item) for item in encoded), dtype=np.int64, count=len(encoded))
        payload["ids.utf8"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        payload["ids.offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    path = Path(path)
    atomic_write(path, lambda handle: np.savez(handle, **payload))
    return path


def load_features(path) -> Features:
    """Read a feature file written by :func:`save_features`.

    Raises ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` naming the file if
    it is truncated or corrupt, not a feature file, of another format version, or inconsistent
    (shapes that disagree with ``count``/``dimension``, non-finite features, repeated ids).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no feature file at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a feature file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META not in archive.files:
                raise ValueError("it has no __meta__ entry")
            meta = json.loads(bytes(archive[_META]).decode("utf-8"))
            check_header(meta, FEATURES_FORMAT, (FEATURES_VERSION,), "features file", "__meta__",
                         keys=(*_WRITER_KEYS, "source"))
            matrix = archive[_MATRIX]
            if meta["id_kind"] == INT_KIND:
                ids = archive["ids"]
            elif meta["id_kind"] == "str":
                ids = _decode_strings(archive["ids.utf8"], archive["ids.offsets"], meta["count"])
            else:
                raise ValueError(f"__meta__ id_kind = {meta['id_kind']!r}; must be 'int' or 'str'")
        expected_shape = (meta["count"], meta["dimension"])
        if matrix.dtype != np.float32 or matrix.shape != expected_shape:
            raise ValueError(
                f"features is {matrix.dtype} {matrix.shape}; __meta__ promises float32 {expected_shape}"
            )
        if meta["id_kind"] == INT_KIND and (ids.dtype != np.int64 or ids.shape != (meta["count"],)):
            raise ValueError(f"ids is {ids.dtype} {ids.shape}; __meta__ promises int64 ({meta['count']},)")
        _, ids, matrix = check_features(ids, matrix)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, TypeError, AttributeError,
            UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
        raise ValueError(f"cannot read feature file {path}: {error} (truncated or corrupt?)") from None
    return Features(ids, matrix, meta)


def load_features_for(path, prompt_ids) -> Features:
    """The rows of the feature file ``path`` whose ids are among ``prompt_ids``, in file order.

    ``prompt_ids``: the ids a trainer's selector uses, int array (N,) or list of N str. A file built
    for more prompts (another split, prompts the trainer filtered out) is fine: its other rows are
    left out. Raises ``ValueError`` when the file's ids are of the other kind (int vs str) or none
    of them is one of ``prompt_ids`` (features keyed by other ids would silently reach nobody).
    """
    ids, matrix, meta = load_features(path)
    kind, known = normalize_ids(prompt_ids, "prompt_ids")
    file_kind = meta["id_kind"]
    if kind is not None and file_kind != kind:
        raise ValueError(f"{path} is keyed by {file_kind} ids (e.g. {_first(ids)!r}) but the prompt ids here are "
                         f"{kind} (e.g. {_first(known)!r}); build it with the trainer's ids (`mopps features --id`)")
    if file_kind == INT_KIND:
        matched = np.isin(ids, known)
    else:
        wanted = set(known)
        matched = np.fromiter((value in wanted for value in ids), dtype=bool, count=len(ids))
    if not matched.any():
        raise ValueError(f"none of the {len(ids)} prompt ids of {path} (e.g. {_first(ids)!r}) is a prompt id here "
                         f"(e.g. {_first(known)!r}); build it with the trainer's ids (`mopps features --id`)")
    rows = np.flatnonzero(matched)
    kept = ids[rows] if file_kind == INT_KIND else [ids[row] for row in rows.tolist()]
    return Features(kept, matrix[rows], meta)


def _first(ids):
    """The first id as a message shows it (a Python int or str; None for no ids)."""
    if len(ids) == 0:
        return None
    return ids[0].item() if isinstance(ids, np.ndarray) else ids[0]


def _decode_strings(data: np.ndarray, offsets: np.ndarray, count: int) -> list[str]:
    if data.dtype != np.uint8 or offsets.dtype != np.int64 or offsets.shape != (count + 1,):
        raise ValueError("ids.utf8 / ids.offsets have the wrong dtype or length")
    if offsets[0] != 0 or offsets[-1] != data.size or (np.diff(offsets) < 0).any():
        raise ValueError("ids.offsets do not describe ids.utf8")
    blob = data.tobytes()
    bounds = offsets.tolist()
    return [blob[start:end].decode("utf-8") for start, end in zip(bounds[:-1], bounds[1:])]
