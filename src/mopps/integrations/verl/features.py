"""Per-prompt features for the selector, from a parquet column or a feature file named in config.

``mopps.features_column``: a column of the training parquet holding one float vector per prompt
(a dotted path reaches into a struct column: ``extra_info.embedding``). ``mopps.features_path``: a
``mopps.features`` file keyed by the verl prompt key ``f"{data_source}/{extra_info.index}"``
(``mopps features ... --id verl``). Either way the rows go to ``SelectionLoop.add_features`` once,
for every training prompt at once; a selector without ``add_features`` ignores them.
"""

from __future__ import annotations

import logging

import numpy as np

from mopps.features import load_features_for
from mopps.loop import SelectionLoop

logger = logging.getLogger(__name__)


def add_prompt_features(loop: SelectionLoop, dataset, keys: list[str], path: str | None = None,
                        column: str | None = None) -> None:
    """Hand the features of the training prompts ``keys`` (list of str (N,), row order of ``dataset``'s
    ``dataframe``) to ``loop``: from ``column`` of that dataframe or from the file at ``path`` (at
    most one is set; neither = nothing to do). Raises ``ValueError`` naming ``mopps.<key>``."""
    if column:
        ids, matrix = keys, column_matrix(dataset.dataframe, column)
    elif path:
        ids, matrix = file_rows(path, keys)
    else:
        return
    if not loop.add_features(ids, matrix):
        logger.warning("MoPPS: %s does not take features; %s is ignored", type(loop.selector).__name__,
                       f"mopps.features_column = {column!r}" if column else f"mopps.features_path = {path!r}")


def column_matrix(frame, column: str) -> np.ndarray:
    """float64 (N, d): the vector of each row in ``column`` of a verl dataframe (HuggingFace
    ``datasets.Dataset``); a dotted path reaches into a struct column. ``ValueError`` naming
    ``mopps.features_column`` and the first bad row."""
    head, *rest = column.split(".")
    columns = list(frame.column_names)
    if head not in columns:
        raise ValueError(f"mopps.features_column = {column!r}: the training data has no {head!r} column "
                         f"(columns: {columns})")
    values = list(frame[head])
    for part in rest:
        for row, value in enumerate(values):
            if not isinstance(value, dict) or part not in value:
                raise ValueError(f"mopps.features_column = {column!r}: row {row} has no {part!r} in {value!r}")
        values = [value[part] for value in values]
    widths = np.array([np.size(value) for value in values])
    ragged = np.flatnonzero((widths != widths[0]) | (widths == 0))
    if len(ragged):
        raise ValueError(f"mopps.features_column = {column!r}: row {ragged[0]} holds {widths[ragged[0]]} numbers but "
                         f"row 0 holds {widths[0]}; every prompt needs a vector of the same, non-zero length")
    try:
        matrix = np.asarray([np.asarray(value, dtype=np.float64).ravel() for value in values])
    except (TypeError, ValueError) as error:
        raise ValueError(f"mopps.features_column = {column!r} must hold numbers: {error}") from None
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValueError(f"mopps.features_column = {column!r}: row {np.argmax(bad)} holds NaN or inf")
    return matrix


def file_rows(path: str, keys: list[str]) -> tuple[list[str], np.ndarray]:
    """``(ids, X)`` of the feature file at ``path`` restricted to the training prompts ``keys`` (the
    file may cover prompts verl filtered out). ``ValueError`` naming ``mopps.features_path`` when
    its ids are not prompt keys or none is one of ``keys``."""
    try:
        ids, matrix, _ = load_features_for(path, keys)
    except (OSError, ValueError) as error:
        raise ValueError(f"mopps.features_path = {path!r}: {error} (verl: `mopps features ... --id verl`)") from None
    if len(ids) < len(keys):
        logger.warning("MoPPS: %d of %d training prompts have no row in %s", len(keys) - len(ids), len(keys), path)
    return ids, matrix
