"""Stable prompt keys for verl rows: ``f"{data_source}/{extra_info['index']}"``.

A posterior must follow a prompt across steps, epochs and restarts, so it cannot be keyed by a
dataset row position (``filter_overlong_prompts`` and ``train_max_samples`` shift positions) nor by
verl's per-row ``index`` field (``RLHFDataset`` fills 0 when ``extra_info.index`` is missing, which
would merge every prompt into one posterior). ``dataset_keys`` therefore refuses a dataset whose
indices are missing or repeated within a ``data_source``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any


def prompt_key(data_source: Any, extra_info: Any, row: int | str = "?") -> str:
    """The key of one prompt; ``row`` only names the offending row in error messages.

    Raises ``ValueError`` if ``extra_info`` has no ``index`` (or it is None) or ``data_source`` is empty.
    """
    if not isinstance(extra_info, Mapping) or extra_info.get("index") is None:
        raise ValueError(
            f"row {row}: extra_info.index is missing (extra_info = {extra_info!r}); MoPPS keys each "
            "prompt by data_source + extra_info.index, and verl would silently use 0 for every such row. "
            "Regenerate the parquet with a unique extra_info.index per prompt (`mopps data ...` does)."
        )
    if data_source is None or str(data_source) == "":
        raise ValueError(f"row {row}: data_source is empty; it is the first half of the prompt key")
    index = extra_info["index"]
    if isinstance(index, float) and index.is_integer():
        index = int(index)  # parquet readers may widen an int column to float when some rows are null
    if isinstance(index, Integral):
        index = int(index)
    return f"{data_source}/{index}"


def keys_of_rows(data_sources: Sequence, extra_infos: Sequence) -> list[str]:
    """Keys of aligned rows (e.g. the ``data_source`` and ``extra_info`` arrays of a verl batch)."""
    if len(data_sources) != len(extra_infos):
        raise ValueError(
            f"len(data_source) = {len(data_sources)} but len(extra_info) = {len(extra_infos)}; they must align"
        )
    return [prompt_key(source, info, row) for row, (source, info) in enumerate(zip(data_sources, extra_infos))]


def dataset_keys(dataset) -> list[str]:
    """Key of every row of a verl ``RLHFDataset`` (position -> key), checked unique.

    ``dataset``: anything with a ``dataframe`` holding ``data_source`` and ``extra_info`` columns
    (verl's ``RLHFDataset``: a HuggingFace ``datasets.Dataset`` after filtering and sub-sampling).
    Raises ``ValueError`` naming the first bad row.
    """
    frame = getattr(dataset, "dataframe", None)
    if frame is None:
        raise ValueError(f"{type(dataset).__name__} has no .dataframe; pass verl's RLHFDataset")
    columns = list(getattr(frame, "column_names", None) or getattr(frame, "columns", []))
    for column in ("data_source", "extra_info"):
        if column not in columns:
            raise ValueError(f"the training data has no {column!r} column (columns: {columns})")
    keys = keys_of_rows(list(frame["data_source"]), list(frame["extra_info"]))
    first_row: dict[str, int] = {}
    for row, key in enumerate(keys):
        if key in first_row:
            raise ValueError(
                f"rows {first_row[key]} and {row} share the prompt key {key!r} (data_source/extra_info.index); "
                "indices must be unique within a data_source"
            )
        first_row[key] = row
    return keys
