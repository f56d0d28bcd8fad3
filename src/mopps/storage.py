"""The one way mopps writes files: atomically, and state as a versioned ``.npz`` readable with numpy.

``atomic_write(path, write)`` is the only place that creates files for the library (selector and
loop states, the adapters' checkpoint side files): ``write`` fills a temporary file in the same
folder, which is flushed and fsynced, then renamed over ``path`` (and the folder fsynced), so a crash
leaves either the old file or the new one, never a torn one. ``atomic_write_folder(path, fill)`` does
the same for a folder of files (the testbed's warm-start cache entries), and ``remove_folder(path)``
takes one away without a reader ever seeing half of it.

``save_state(state, path)`` / ``load_state(path)`` store a state: a nested dict whose leaves are
numpy arrays, lists of str (prompt ids) or JSON scalars (the ``state_dict()`` of a selector or of a
``SelectionLoop``). File layout (file version 2): an uncompressed ``.npz`` (a zip of ``.npy`` files,
each CRC-checked) holding

- ``__meta__.npy``: uint8 bytes of the UTF-8 JSON ``{"file_format": "mopps.state-file",
  "file_version": 2, "state": tree}``, where ``tree`` is the state with every array replaced by
  ``{"__array__": name}``, every list of str by ``{"__strings__": name}`` and every integer outside
  +-2**53 (numpy's generator state) by ``{"__int__": "decimal digits"}``;
- ``<name>.npy`` per array, ``name`` being its path of keys joined by ``/`` (``arrays/alpha``); a list
  of str as ``<name>.utf8`` (uint8 bytes of the concatenated UTF-8 strings) and ``<name>.offsets``
  (int64, n + 1).

Read one by hand with ``f = numpy.load(path)``, ``json.loads(bytes(f["__meta__"]))`` and
``f["arrays/alpha"]``. Files of version 1 (selector states of mopps 0.1: ``__meta__`` with
``array_keys``, arrays at the top level) are read into the same state dict (``_from_version_1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from mopps.core.validation import check_header

FILE_FORMAT = "mopps.state-file"
FILE_VERSION = 2

_META = "__meta__"
_ARRAY, _STRINGS, _INT = "__array__", "__strings__", "__int__"
_JSON_SAFE_INT = 2**53


def atomic_write(path, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace the file ``path`` with what ``write(handle)`` writes to a binary handle.

    Either the complete new file or the previous one (if any) exists afterwards, also after a crash
    or an exception in ``write`` (re-raised; the temporary file is removed). The file gets the
    permissions a plain ``open()`` would give (``mkstemp``'s 0600 would hide checkpoints from a team).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o666 & ~current_umask())
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def atomic_write_folder(path, fill: Callable[[Path], None]) -> None:
    """Create the folder ``path`` holding the files ``fill(folder)`` writes into an empty folder.

    ``fill`` works in a temporary folder beside ``path``; its files are fsynced and given the modes a
    plain ``mkdir`` / ``open`` would give, then the folder is renamed to ``path``: afterwards ``path``
    is complete or absent, also after a crash or an exception in ``fill`` (re-raised; the temporary
    folder is removed). ``FileExistsError`` if a non-empty ``path`` exists (another writer's, say):
    whether to keep or replace it is the caller's decision (``remove_folder`` first).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        fill(staging)
        umask = current_umask()
        for item in staging.iterdir():
            os.chmod(item, 0o666 & ~umask)  # mkstemp-like 0600 files would hide a shared cache from a team
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o777 & ~umask)
        _fsync_directory(staging)
        try:
            os.rename(staging, path)
        except OSError as error:
            if path.exists():
                raise FileExistsError(f"{path} exists; it was not replaced") from error
            raise
        _fsync_directory(path.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def remove_folder(path) -> None:
    """Remove the folder ``path``: renamed aside first (so no reader sees it half deleted), then
    deleted. A folder that is gone already (another process removed it first) is no error."""
    path = Path(path)
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".removed", dir=path.parent))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside / "folder")
    finally:
        shutil.rmtree(aside)


def write_json(path, payload: Any) -> None:
    """Write ``payload`` as UTF-8 JSON to ``path`` with ``atomic_write``."""
    atomic_write(path, lambda handle: handle.write(json.dumps(payload).encode("utf-8")))


def save_state(state: dict[str, Any], path) -> None:
    """Write ``state`` (a dict; leaves: numpy arrays, lists of str, JSON scalars) to ``path`` atomically.

    Raises ``ValueError`` naming the key path of a leaf that cannot be stored (an object array, a
    set, a non-str dict key, ...), before anything is written.
    """
    if not isinstance(state, dict):
        raise ValueError(f"state is a {type(state).__name__}; a state must be a dict")
    members: dict[str, np.ndarray] = {}
    tree = _encode(state, (), members)
    meta = {"file_format": FILE_FORMAT, "file_version": FILE_VERSION, "state": tree}
    members[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda handle: np.savez(handle, **members))


def load_state(path, what: str = "mopps state") -> dict[str, Any]:
    """Read a state written by ``save_state`` (or a version 1 selector file).

    ``what`` names the content in errors. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` naming the file if it is a directory, truncated, corrupt (CRC, a damaged zip
    header, malformed ``__meta__``), not a mopps state file, or of an unsupported file version.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot read {what} {path}: it is a directory, not a state file")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what} file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive[_META]).decode("utf-8"))
            if isinstance(meta, dict) and meta.get("file_format") != FILE_FORMAT and "array_keys" in meta:
                state = _from_version_1(meta, archive)
            else:
                check_header(meta, FILE_FORMAT, (FILE_VERSION,), "state file", "__meta__",
                             keys=("state",), format_key="file_format", version_key="file_version")
                state = _decode(meta["state"], archive)
            if not isinstance(state, dict):
                raise ValueError("the stored state is not a dict")
    except (zipfile.BadZipFile, EOFError, OSError, LookupError, TypeError, AttributeError, ArithmeticError,
            UnicodeDecodeError, json.JSONDecodeError, ValueError, zlib.error, struct.error,
            # A damaged zip header can ask for an unknown compression method or encryption
            # (NotImplementedError / RuntimeError from zipfile); deeply nested JSON in __meta__
            # overflows the decoder's stack (RecursionError, a RuntimeError).
            NotImplementedError, RuntimeError) as error:
        detail = error if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        raise ValueError(f"cannot read {what} {path}: {detail} (truncated or corrupt?)") from None
    return state


# -- encoding ----------------------------------------------------------------------------------------

def _encode(value, path: tuple[str, ...], members: dict[str, np.ndarray]):
    where = "/".join(path) or "state"
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in (_ARRAY, _STRINGS, _INT):
            raise ValueError(f"{where}: the key {next(iter(value))!r} is reserved by the file format")
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str) or "/" in key:
                raise ValueError(f"{where}: key {key!r} must be a str without '/'")
            encoded[key] = _encode(item, path + (key,), members)
        return encoded
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{where}: arrays of dtype {value.dtype} cannot be stored (bool, int, float only)")
        members[where] = value
        return {_ARRAY: where}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, str) for item in value):
            encoded = [item.encode("utf-8") for item in value]
            lengths = np.fromiter((len(item) for item in encoded), dtype=np.int64, count=len(encoded))
            members[f"{where}.utf8"] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
            members[f"{where}.offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            return {_STRINGS: where}
        return [_encode(item, path + (str(position),), members) for position, item in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        value = int(value)
        return value if -_JSON_SAFE_INT < value < _JSON_SAFE_INT else {_INT: str(value)}
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{where}: a {type(value).__name__} cannot be stored in a state file")


def _decode(tree, archive):
    if isinstance(tree, dict):
        if len(tree) == 1:
            marker, name = next(iter(tree.items()))
            if marker == _ARRAY:
                return archive[name]
            if marker == _STRINGS:
                return _decode_strings(archive[f"{name}.utf8"], archive[f"{name}.offsets"])
            if marker == _INT:
                return int(name)
        return {key: _decode(item, archive) for key, item in tree.items()}
    if isinstance(tree, list):
        return [_decode(item, archive) for item in tree]
    return tree


def _decode_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    blob = data.tobytes()
    bounds = offsets.tolist()
    return [blob[start:end].decode("utf-8") for start, end in zip(bounds[:-1], bounds[1:])]


_V1_META_KEYS = ("format", "version", "selector", "config", "step", "rng", "scalars", "array_keys",
                 "string_array_keys")


def _from_version_1(meta: dict, archive) -> dict[str, Any]:
    """A version 1 selector file as the state dict it was written from.

    Version 1 (``mopps`` 0.1) kept the selector state's top-level keys in ``__meta__``, its array
    entries as top-level members (string lists as ``<key>.utf8`` + ``<key>.offsets``), its scalar
    entries under ``scalars``, and the generator state's integers as ``{"int": "digits"}``.
    """
    if meta.get("version") != 1:
        raise ValueError(f"format version {meta.get('version')} is not supported (this mopps reads versions 1 "
                         f"and {FILE_VERSION})")
    missing = [key for key in _V1_META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"__meta__ lacks {missing}")
    if not isinstance(meta["config"], dict) or not isinstance(meta["scalars"], dict):
        raise ValueError("__meta__ 'config' and 'scalars' must be objects")
    arrays: dict[str, Any] = {key: archive[key] for key in meta["array_keys"]}
    for key in meta["string_array_keys"]:
        arrays[key] = _decode_strings(archive[f"{key}.utf8"], archive[f"{key}.offsets"])
    arrays.update(meta["scalars"])
    state = {key: meta[key] for key in ("format", "version", "selector", "config", "step")}
    state["rng"] = _decode_v1_ints(meta["rng"])
    state["arrays"] = arrays
    return state


def _decode_v1_ints(value):
    if isinstance(value, dict):
        if set(value) == {"int"}:
            return int(value["int"])
        return {key: _decode_v1_ints(item) for key, item in value.items()}
    return value


def current_umask() -> int:
    """The process's file-creation mask (e.g. 0o022), read without changing it: files and folders
    made under a temporary name get the modes a plain ``open`` / ``mkdir`` would give them."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
