"""Selector state files: atomic, versioned, readable with numpy alone.

Format (``version`` 1): an uncompressed ``.npz`` (a zip of ``.npy`` files, each CRC-checked)
holding

- ``__meta__.npy``: uint8 bytes of a UTF-8 JSON object ``{"format": "mopps.selector-state",
  "version": 1, "selector": class name, "config": {...}, "step": int, "rng": numpy bit-generator
  state (big integers as decimal strings), "scalars": {...}, "array_keys": [...],
  "string_array_keys": [...]}``;
- one ``.npy`` per learned array (``alpha``, ``beta``, ``ids``, ...). String id lists are stored as
  ``<key>.utf8`` (uint8 bytes of the concatenated UTF-8 strings) and ``<key>.offsets`` (int64, n+1).

Read one by hand with ``numpy.load(path)`` and ``json.loads(bytes(f["__meta__"]))``. Writes go to a
temporary file in the same folder, are flushed and fsynced, then renamed over the target (and the
folder fsynced), so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mopps.selectors.base import STATE_FORMAT, STATE_VERSION

_META = "__meta__"
_META_KEYS = ("format", "version", "selector", "config", "step", "rng", "scalars", "array_keys",
              "string_array_keys")


def save_state(state: dict[str, Any], path) -> None:
    """Write a selector ``state_dict`` to ``path`` atomically."""
    path = Path(path)
    meta = {key: value for key, value in state.items() if key != "arrays"}
    meta["rng"] = _encode_big_ints(state["rng"])
    payload: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    array_keys: list[str] = []
    string_keys: list[str] = []
    for key, value in state["arrays"].items():
        if isinstance(value, np.ndarray):
            payload[key] = value
            array_keys.append(key)
        elif isinstance(value, list):
            encoded = [item.encode("utf-8") for item in value]
            lengths = np.fromiter((len(item) for item in encoded), dtype=np.int64, count=len(encoded))
            payload[f"{key}.utf8"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            payload[f"{key}.offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            string_keys.append(key)
        else:
            scalars[key] = value
    meta.update(scalars=scalars, array_keys=array_keys, string_array_keys=string_keys)
    payload[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would (checkpoints on a
        # shared cluster stay readable to the team).
        os.fchmod(descriptor, 0o666 & ~_current_umask())
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, **payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def load_state(path) -> dict[str, Any]:
    """Read a state written by ``save_state``; ``ValueError`` naming the file if it is truncated,
    corrupt, not a mopps state, or of an unsupported format version."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no selector state at {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a selector state file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META not in archive.files:
                raise ValueError("missing the __meta__ entry")
            meta = json.loads(bytes(archive[_META]).decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
                raise ValueError(f"not a {STATE_FORMAT!r} file")
            if meta.get("version") != STATE_VERSION:
                raise ValueError(
                    f"format version {meta.get('version')} is not supported (this mopps reads "
                    f"version {STATE_VERSION})"
                )
            missing = [key for key in _META_KEYS if key not in meta]
            if missing:
                raise ValueError(f"__meta__ lacks {missing}")
            if not isinstance(meta["config"], dict) or not isinstance(meta["scalars"], dict):
                raise ValueError("__meta__ 'config' and 'scalars' must be objects")
            arrays: dict[str, Any] = {key: archive[key] for key in meta["array_keys"]}
            for key in meta["string_array_keys"]:
                arrays[key] = _decode_strings(archive[f"{key}.utf8"], archive[f"{key}.offsets"])
            arrays.update(meta.pop("scalars"))
            meta["rng"] = _decode_big_ints(meta["rng"])
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, TypeError, AttributeError,
            UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
        raise ValueError(f"cannot read selector state {path}: {error} (truncated or corrupt?)") from None
    meta.pop("array_keys")
    meta.pop("string_array_keys")
    meta["arrays"] = arrays
    return meta


def _decode_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    blob = data.tobytes()
    bounds = offsets.tolist()
    return [blob[start:end].decode("utf-8") for start, end in zip(bounds[:-1], bounds[1:])]


def _encode_big_ints(value):
    """JSON cannot carry numpy's 128-bit generator state portably: write integers as strings."""
    if isinstance(value, dict):
        return {key: _encode_big_ints(item) for key, item in value.items()}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return {"int": str(int(value))}
    return value


def _decode_big_ints(value):
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {key: _decode_big_ints(item) for key, item in value.items()}
    return value


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
