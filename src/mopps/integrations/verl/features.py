"""Per-prompt features for the selector, from a parquet column or a feature file named in config.

``mopps.features_column``: a column of the training parquet holding one float vector per prompt
(a dotted path reaches into a struct column: ``extra_info.embedding``). ``mopps.features_path``: a
``mopps.features`` file keyed by the verl prompt key ``f"{data_source}/{extra_info.index}"``
(``mopps features ... --id verl``). Either way the rows go to ``SelectionLoop.add_features`` once,
for every training prompt at once.
"""

from __future__ import annotations

import logging

import numpy as np

from mopps.features import load_features_for, vector_column
from mopps.loop import SelectionLoop

logger = logging.getLogger(__name__)


def add_prompt_features(loop: SelectionLoop, dataset, keys: list[str], path: str | None = None,
                        column: str | None = None) -> None:
    """Hand the features of the training prompts ``keys`` (list of str (N,), row order of ``dataset``'s
    ``dataframe``) to ``loop``: from ``column`` of that dataframe (``mopps.features.vector_column``,
    the TRL adapter's reader too) or from the file at ``path`` (at most one is set; neither = nothing
    to do). A selector without ``add_features`` was refused when it was built (``build_selector``).
    Raises ``ValueError`` naming ``mopps.<key>``."""
    if not (column or path):
        return
    name, value = ("features_column", column) if column else ("features_path", path)
    try:
        ids, matrix = (keys, vector_column(dataset.dataframe, column)) if column else file_rows(path, keys)
        loop.add_features(ids, matrix)
    except ValueError as error:
        raise ValueError(f"mopps.{name} = {value!r}: {error}") from None


def file_rows(path: str, keys: list[str]) -> tuple[list[str], np.ndarray]:
    """``(ids, X)`` of the feature file at ``path`` restricted to the training prompts ``keys`` (the
    file may cover prompts verl filtered out). ``ValueError`` when the file cannot be read, its ids
    are not prompt keys or none is one of ``keys``."""
    try:
        ids, matrix, _ = load_features_for(path, keys)
    except (OSError, ValueError) as error:
        raise ValueError(f"{error} (verl: `mopps features ... --id verl`)") from None
    if len(ids) < len(keys):
        logger.warning("MoPPS: %d of %d training prompts have no row in %s", len(keys) - len(ids), len(keys), path)
    return ids, matrix
