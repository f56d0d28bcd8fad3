"""Features from explicit dataset columns: one-hot categories, standardised numbers, prompt length.

The cheapest features a user has are the ones the dataset already carries: MATH's ``level`` and
``type`` (``mopps data math`` keeps them in ``extra_info``), a Countdown target, the prompt's
length. :func:`encode_columns` turns such columns into a float32 matrix:

- a **categorical** column becomes one 0/1 column per distinct value (values compared as text,
  in sorted order, named ``"<column>=<value>"``); a missing value is all zeros;
- a **numeric** column is standardised over the rows given, ``(x - mean) / std`` with the
  population std (a constant column becomes all zeros), named ``<column>``; a missing or
  non-finite value is refused, naming the row;
- **prompt length** is ``log(1 + length)`` (lengths are right-skewed; a linear predictor wants
  the ratio, not the difference), then standardised like a numeric column.

The means and stds go into the file's metadata (``encoding``), so the same transformation can be
applied to other rows by hand. Standardisation uses the rows of one file: build the features of
the training split, which is what a selector ranks.

:func:`vector_column` reads a column that already holds a feature vector per row (the TRL and verl
adapters' ``features_column``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mopps.features import data as data_files
from mopps.features.files import Features

LENGTH_UNITS = ("chars", "tokens")
MAX_CATEGORIES = 256


def encode_columns(
    categorical: Mapping[str, Sequence] | None = None,
    numeric: Mapping[str, np.ndarray] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> tuple[np.ndarray, list[str], dict]:
    """``(X, names, encoding)`` for aligned columns of m rows.

    ``categorical``: name -> m values (str, int, bool, or None for missing). ``numeric``: name -> m
    floats (finite). ``X``: float32 (m, d), categorical blocks first, in the order given. ``names``:
    d column names. ``encoding``: ``{"categorical": {name: [values]}, "numeric": {name: {"mean",
    "std"}}}``. Raises ``ValueError`` naming the column and the first bad row, for unequal lengths,
    non-finite numbers, unhashable categories, or more than ``max_categories`` distinct values.
    """
    categorical = dict(categorical or {})
    numeric = dict(numeric or {})
    if not categorical and not numeric:
        raise ValueError("no columns given; name at least one categorical or numeric column")
    lengths = {name: len(values) for name, values in {**categorical, **numeric}.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths {lengths}; they must be equal")
    rows = next(iter(lengths.values()))
    blocks, names = [], []
    encoding: dict = {"categorical": {}, "numeric": {}}
    for name, values in categorical.items():
        keys = []
        for row, value in enumerate(values):
            if value is not None and not isinstance(value, (str, bool, int, np.integer, np.str_)):
                raise ValueError(
                    f"{name}[{row}] = {value!r}; a categorical column holds text, integers or booleans"
                )
            keys.append(None if value is None else str(value))
        categories = sorted({key for key in keys if key is not None})
        if len(categories) > max_categories:
            raise ValueError(
                f"{name} has {len(categories)} distinct values (> max_categories = {max_categories}); "
                "is it free text? Use a numeric column or an embedding instead"
            )
        position = {category: index for index, category in enumerate(categories)}
        codes = np.array([-1 if key is None else position[key] for key in keys], dtype=np.int64)
        block = np.zeros((rows, len(categories)), dtype=np.float32)
        present = codes >= 0
        block[np.flatnonzero(present), codes[present]] = 1.0
        blocks.append(block)
        names.extend(f"{name}={category}" for category in categories)
        encoding["categorical"][name] = categories
    for name, values in numeric.items():
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name} must be one number per row; got shape {array.shape}")
        finite = np.isfinite(array)
        if not finite.all():
            row = int(np.argmin(finite))
            raise ValueError(f"{name}[{row}] = {float(array[row])}; numeric columns must be finite numbers "
                             "with no missing values")
        mean, std = float(array.mean()), float(array.std())
        scale = std if std > 0 else 1.0
        blocks.append(((array - mean) / scale).astype(np.float32)[:, None])
        names.append(name)
        encoding["numeric"][name] = {"mean": mean, "std": std}
    return np.concatenate(blocks, axis=1), names, encoding


def column_features(
    data,
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    length: str | None = None,
    tokenizer=None,
    chat_template: bool = True,
    id_key: str = "prompt_id",
    max_categories: int = MAX_CATEGORIES,
) -> Features:
    """Features of every prompt in ``data`` from its columns; save them with ``save_features``.

    ``data``: a verl parquet file or TRL dataset folder written by ``mopps data`` (or a
    ``pyarrow.Table`` of such rows). ``categorical`` / ``numeric``: column paths (dots into
    structs, e.g. ``extra_info.level``). ``length``: ``"chars"`` (characters of the message
    texts), ``"tokens"`` (tokens of the prompt as the model reads it: needs ``tokenizer``, an HF
    tokenizer; chat template applied when it has one and ``chat_template``), or None.
    ``id_key``: see :mod:`mopps.features.data`. Returns ``Features(ids, X, meta)`` in row order,
    ``meta["source"] = "columns"``, ``meta["columns"]`` the names of X's columns.
    """
    if length not in (None, *LENGTH_UNITS):
        raise ValueError(f"length = {length!r}; must be None or one of {LENGTH_UNITS}")
    if length == "tokens" and tokenizer is None:
        raise ValueError("length = 'tokens' needs a tokenizer")
    table = data if hasattr(data, "column_names") else data_files.read_table(data)
    _, ids = data_files.prompt_ids(table, id_key)
    categorical_values = {name: data_files.column(table, name).to_pylist() for name in categorical}
    numeric_values = {name: _numeric_column(table, name) for name in numeric}
    if length is not None:
        rows = data_files.prompts(table)
        if length == "chars":
            counts = np.array([len(data_files.plain_text(prompt, row)) for row, prompt in enumerate(rows)])
        else:
            counts = data_files.token_counts(tokenizer, rows, chat_template)
        numeric_values[f"log1p_length_{length}"] = np.log1p(counts.astype(np.float64))
    X, names, encoding = encode_columns(categorical_values, numeric_values, max_categories)
    meta = {"source": "columns", "columns": names, "encoding": encoding, "id_key": id_key,
            "data": str(Path(data).resolve()) if isinstance(data, (str, Path)) else None}
    if length == "tokens":
        meta["tokenizer"] = getattr(tokenizer, "name_or_path", None)
    return Features(ids, X, meta)


def vector_column(table, column: str) -> np.ndarray:
    """float64 (N, d): the feature vector of each row in ``column`` of ``table`` (a HuggingFace
    ``datasets.Dataset``, or anything with ``column_names`` whose ``table[name]`` gives one value per
    row); a dotted path reaches into a struct column (``extra_info.embedding``). Each row must hold a
    list of d >= 1 numbers, the same d for every row (a column of single numbers is refused: it is
    more often an id than a feature; write ``[x]`` for one feature). ``ValueError`` naming the first
    bad row; finiteness is ``SelectionLoop.add_features``'s check."""
    head, *rest = column.split(".")
    columns = list(table.column_names)
    if head not in columns:
        raise ValueError(f"the training data has no {head!r} column (columns: {columns})")
    values = list(table[head])
    for part in rest:
        for row, value in enumerate(values):
            if not isinstance(value, Mapping) or value.get(part) is None:  # a struct's missing field is None
                raise ValueError(f"row {row} has no {part!r} in {value!r}")
        values = [value[part] for value in values]
    if not values:
        raise ValueError("the training data has no rows")
    single = [row for row, value in enumerate(values) if np.ndim(value) == 0]
    if single:
        raise ValueError(f"row {single[0]} holds the single value {values[single[0]]!r}; each row must hold a list "
                         "of d numbers (for one feature: [x])")
    widths = np.array([np.size(value) for value in values])
    ragged = np.flatnonzero((widths != widths[0]) | (widths == 0))
    if len(ragged):
        raise ValueError(f"row {ragged[0]} holds {widths[ragged[0]]} numbers but row 0 holds {widths[0]}; every "
                         "row must hold a list of the same, non-zero number of numbers")
    try:
        return np.asarray([np.asarray(value, dtype=np.float64).ravel() for value in values])
    except (TypeError, ValueError) as error:
        raise ValueError(f"the column must hold numbers: {error}") from None


def _numeric_column(table, name: str) -> np.ndarray:
    """float64 (m,) of a numeric column; missing values become NaN (refused by encode_columns)."""
    import pyarrow as pa

    array = data_files.column(table, name)
    kind = array.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind)):
        raise ValueError(f"{name} is a {kind} column; numeric columns must hold numbers (use it as categorical?)")
    return array.cast(pa.float64()).to_numpy(zero_copy_only=False)
