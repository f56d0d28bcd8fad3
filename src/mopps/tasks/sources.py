"""Loaders for the public datasets the paper uses; the source is always a parameter.

Each loader takes ``source``: a Hugging Face Hub dataset name (the default, downloaded by
``datasets.load_dataset``), a local directory laid out like the Hub repository (split files named
``train-*.parquet``, ``test-*.parquet``, ...), or a single local ``.parquet``/``.json``/``.jsonl``
file holding the requested split. Tests use the local forms; nothing here downloads unless given
a Hub name.

The DeepScaleR train set and its five evaluation sets come from the JSON files of the
DeepScaleR / rllm repository layout (``<dir>/train/deepscaler.json``,
``<dir>/test/{aime,amc,math,minerva,olympiad_bench}.json``), read with the standard library
because their ``answer`` fields mix strings, floats (AMC) and lists (Minerva, OlympiadBench).
"""

from __future__ import annotations

import json
from pathlib import Path

COUNTDOWN_HUB = {"3to4": "Jiayi-Pan/Countdown-Tasks-3to4", "4": "Jiayi-Pan/Countdown-Tasks-4"}
MATH_HUB = "DigitalLearningGmbH/MATH-lighteval"
GEO3K_HUB = "hiyouga/geometry3k"
DEEPSCALER_TRAIN = "deepscaler"
DEEPSCALER_EVALS = ("aime", "amc", "math", "minerva", "olympiad_bench")
_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}


def load_split(source: str | Path, split: str):
    """One split of a dataset as a ``datasets.Dataset``; see the module docstring for ``source``."""
    from datasets import load_dataset

    path = Path(source)
    if path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix)
        if builder is None:
            raise ValueError(f"source = {str(source)!r}: a local file must end in one of {sorted(_FILE_BUILDERS)}")
        return load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        return load_dataset(str(path), split=split)
    if str(source).startswith((".", "/", "~")):
        raise ValueError(f"source = {str(source)!r} looks like a local path but does not exist")
    return load_dataset(str(source), split=split)


def read_deepscaler_json(directory: str | Path, name: str) -> list[dict]:
    """Records of one DeepScaleR JSON file: ``train/deepscaler.json`` or ``test/<name>.json``.

    Raises ``ValueError`` naming the missing file or the record that lacks ``problem``/``answer``.
    """
    subfolder = "train" if name == DEEPSCALER_TRAIN else "test"
    if name != DEEPSCALER_TRAIN and name not in DEEPSCALER_EVALS:
        raise ValueError(f"name = {name!r}; must be {DEEPSCALER_TRAIN!r} or one of {DEEPSCALER_EVALS}")
    path = Path(directory) / subfolder / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"DeepScaleR file not found: {path}")
    with path.open(encoding="utf-8") as handle:
        records = json.load(handle)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    for position, record in enumerate(records):
        missing = [key for key in ("problem", "answer") if key not in record]
        if missing:
            raise ValueError(f"{path}: record {position} lacks {missing}")
    return records
