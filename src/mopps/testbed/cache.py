"""The testbed's warm-start cache: one entry scheme for every model it trains once and reuses
(``warmstart``'s policy, ``hf_tiny``'s Qwen2).

An entry is a folder ``<name>-<key>/`` in ``cache_dir()`` (``$MOPPS_CACHE`` or ``~/.cache/mopps``,
created on first use) holding the model's files and ``mopps-cache.json``, its manifest: the key, the
torch version, the config's repr and the SHA-256 of every other file. ``cache_key`` hashes the
entry's name, the code version of what builds it, the installed torch version (another torch may
train other weights from the same seed) and every setting. An entry whose manifest is missing or of
another key, or whose files do not match their hashes, is rebuilt with a ``RuntimeWarning``, never
used. Entries are written through ``mopps.storage.atomic_write_folder`` (complete or absent, also
after a crash); a valid entry that another process stored meanwhile is kept (both hold the same
weights).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from mopps.storage import atomic_write_folder, remove_folder

MANIFEST = "mopps-cache.json"
Model = TypeVar("Model")


def cache_dir() -> Path:
    """``$MOPPS_CACHE`` if set, else ``~/.cache/mopps``."""
    return Path(os.environ.get("MOPPS_CACHE") or Path.home() / ".cache" / "mopps")


def cache_key(name: str, code_version: int, settings: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over ``name``, ``code_version`` (bumped when the code changes what a
    config produces), ``torch.__version__`` and ``settings`` (JSON values: every setting of the config)."""
    text = json.dumps({"name": name, "format": code_version, "torch": torch.__version__, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_path(name: str, key: str) -> Path:
    """The folder of entry ``name``-``key`` (it may not exist yet)."""
    return cache_dir() / f"{name}-{key}"


def entry_problem(path: Path, key: str) -> str | None:
    """Why the entry folder ``path`` cannot be used for ``key``, or None if it can."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        return f"no readable {MANIFEST} ({type(error).__name__})"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return f"{MANIFEST} is not for this config"
    hashes = _file_hashes(path)
    expected = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    differing = sorted(name for name in set(hashes) | set(expected) if hashes.get(name) != expected.get(name))
    return f"files missing, added or changed: {', '.join(differing)}" if differing else None


def load_or_build(name: str, key: str, description: str, build: Callable[[], Model],
                  write: Callable[[Model, Path], None], read: Callable[[Path], Model]) -> Model:
    """The model of entry ``name``-``key``: ``read(folder)`` of a valid entry, else ``build()``, stored
    with ``write(model, folder)`` (a damaged entry is rebuilt with a ``RuntimeWarning``).
    ``description``: the config's repr, kept in the manifest for a reader of the cache."""
    path = entry_path(name, key)
    if path.exists():
        problem = entry_problem(path, key)
        if problem is None:
            return read(path)
        warnings.warn(f"rebuilding the cache entry {path}: {problem}", RuntimeWarning, stacklevel=3)
    model = build()
    store_entry(path, key, description, lambda folder: write(model, folder))
    return model


def store_entry(path: Path, key: str, description: str, write: Callable[[Path], None]) -> None:
    """Store the files ``write(folder)`` writes, with their manifest, as the entry ``path`` of ``key``.
    A damaged entry at ``path`` is removed first; a valid one stored meanwhile by another process is kept."""

    def fill(folder: Path) -> None:
        write(folder)
        manifest = {"key": key, "torch": torch.__version__, "config": description, "files": _file_hashes(folder)}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))

    if path.exists() and entry_problem(path, key) is not None:
        remove_folder(path)
    try:
        atomic_write_folder(path, fill)
    except FileExistsError:
        if entry_problem(path, key) is not None:  # not another process's good copy: a real failure
            raise


def _file_hashes(folder: Path) -> dict[str, str]:
    return {item.name: hashlib.sha256(item.read_bytes()).hexdigest()
            for item in sorted(folder.iterdir()) if item.is_file() and item.name != MANIFEST}
