"""Boundary checks shared by every layer: the one vocabulary of validation.

Each check raises ``ValueError`` naming the argument and the first bad position, in the style
``successes[3] = -1.0; successes must be >= 0``. Checks never mutate their inputs, so a caller that
validates everything before touching its state leaves that state unchanged on bad input.

The vocabulary: scalars (``check_number`` with inclusive bounds, ``check_positive``,
``check_probability``, ``check_integer``, ``check_seed``, ``check_flag``, ``check_choice``,
``check_ordered``, ``check_band``, ``check_count``), arrays (``as_float_array``,
``as_feature_matrix``, ``check_at_least``, ``check_same_length``, ``check_observations``), ids
(``mopps.core.id_index.normalize_ids`` / ``require_unique`` / ``check_same_kind`` at an entrance,
``check_saved_ids`` for a saved record) and saved states (``check_header``: format, version,
keys). Selectors, their settings (``ReferenceSettings``), the loop, storage and the adapters call
these and name their own fields; a rule written out a second time elsewhere is a bug waiting to
drift.

Why our own small functions rather than a declarative library (pydantic, attrs validators,
voluptuous): ``core`` is numpy-only by design (no dependency for a user who installs the selectors
alone, and none that pins numpy or Python for us); what we check is mostly numpy arrays, whose
errors must name the first bad position (``trials[3] = 0``), which those libraries leave to a
hand-written validator per array anyway; the checks run on every ``update`` and ``select`` of a
training loop, where they should cost a comparison, not the construction of a model object; and the
same rule must serve a constructor argument (``discount``), a settings field
(``bandit_decay_ratio``) and a saved state (``state['selector']['step']``) under each one's own
name, which a plain function with a ``name`` argument does and a field-bound declaration does not.
A dataclass-style library would mainly buy declarative field lists; ``ReferenceSettings`` is the
one place with many fields, and there a short ``__post_init__`` calling these functions stays
readable.
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable
from typing import Any, Sequence

import numpy as np

from mopps.core.id_index import INT_KIND, STR_KIND, normalize_ids, require_unique


def as_number_array(values, name: str, ndim: int = 1, shape: str = "one-dimensional") -> np.ndarray:
    """Return ``values`` as a float64 array of ``ndim`` dimensions; NaN and infinities are allowed
    (callers check them where they matter). ``shape`` words the error for a wrong dimension."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers; could not convert: {error}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {shape}; got shape {array.shape}")
    return array


def as_float_array(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float64 array whose entries are all finite."""
    array = as_number_array(values, name)
    finite = np.isfinite(array)
    if not finite.all():
        position = int(np.argmin(finite))
        raise ValueError(f"{name}[{position}] = {array[position]}; {name} must be finite")
    return array


def as_feature_matrix(values, name: str = "features") -> np.ndarray:
    """Return ``values`` as a 2-D float64 (rows, columns) array whose entries are all finite; the
    error names the first bad entry as ``name[row, column]``."""
    array = as_number_array(values, name, 2, "two-dimensional (prompts, columns)")
    finite = np.isfinite(array)
    if not finite.all():
        row, column = np.unravel_index(int(np.argmin(finite)), array.shape)
        raise ValueError(f"{name}[{row}, {column}] = {array[row, column]}; {name} must be finite")
    return array


def check_at_least(array: np.ndarray, bound: float, name: str) -> None:
    """Raise unless every entry of ``array`` is >= ``bound``."""
    bad = array < bound
    if bad.any():
        position = int(np.argmax(bad))
        raise ValueError(f"{name}[{position}] = {array[position]}; {name} must be >= {bound}")


def check_same_length(**arrays: Sequence) -> None:
    """Raise unless all named arrays have the same length."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"len({name}) = {length}" for name, length in lengths.items())
        raise ValueError(f"lengths differ: {described}; they must be equal")


def check_observations(successes, trials) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch of per-prompt observations.

    ``successes``: float array (m,), successful rollouts (may be fractional), 0 <= successes <= trials.
    ``trials``: float array (m,), rollouts per prompt, trials >= 1 (fractional pseudo-counts allowed).
    Returns both as float64 arrays.
    """
    successes = as_float_array(successes, "successes")
    trials = as_float_array(trials, "trials")
    check_same_length(successes=successes, trials=trials)
    check_at_least(successes, 0.0, "successes")
    check_at_least(trials, 1.0, "trials")
    over = successes > trials
    if over.any():
        position = int(np.argmax(over))
        raise ValueError(
            f"successes[{position}] = {successes[position]} > trials[{position}] = "
            f"{trials[position]}; successes must be <= trials"
        )
    return successes, trials


def is_number(value) -> bool:
    """True for a real number (Python or numpy int/float, ``fractions.Fraction``), False for a bool,
    text, None or anything else: ``True`` is no rate and ``"2"`` is no count."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_integer(value, name: str, minimum: int | None = 0) -> int:
    """``value`` as a Python int; ``ValueError`` naming ``name`` unless it is an integer (not a bool,
    not a float such as 2.0) and ``>= minimum`` (any integer with ``minimum=None``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} = {value!r}; {name} must be an integer{bound}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} = {value}; {name} must be an integer >= {minimum}")
    return int(value)


def check_number(value, name: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a Python float; ``ValueError`` naming ``name`` unless it is a real number (not a
    bool, not a string such as "2", not None), finite and within the inclusive bounds ``minimum`` /
    ``maximum`` (None: unbounded on that side)."""
    number = float(value) if is_number(value) else float("nan")
    if not (np.isfinite(number) and (minimum is None or number >= minimum)
            and (maximum is None or number <= maximum)):
        if minimum is not None and maximum is not None:
            wanted = f"a finite number in [{minimum:g}, {maximum:g}]"
        elif minimum is not None:
            wanted = f"a finite number >= {minimum:g}"
        elif maximum is not None:
            wanted = f"a finite number <= {maximum:g}"
        else:
            wanted = "a finite number"
        raise ValueError(f"{name} = {_shown(value)}; {name} must be {wanted}")
    return number


def _shown(value) -> str:
    """``value`` as a user wrote it: 1.5, not np.float64(1.5); text quoted."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def number_from_text(value):
    """``value`` as a float when it is written as text ("0.5", from a YAML file or a command line) or
    is another object ``float()`` converts (a 0-d array); a bool, None or anything else unchanged,
    for a check such as ``check_number`` to refuse by name."""
    if isinstance(value, (bool, np.bool_)) or is_number(value):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def check_positive(value, name: str) -> float:
    """``value`` as a Python float; ``ValueError`` naming ``name`` unless it is a finite real number
    ``> 0`` (a Beta parameter, a standard deviation that must not vanish, a half-life)."""
    number = float(value) if is_number(value) else float("nan")
    if not (np.isfinite(number) and number > 0.0):
        raise ValueError(f"{name} = {_shown(value)}; {name} must be a finite number > 0")
    return number


def check_flag(value, name: str) -> bool:
    """``value`` as a Python bool; ``ValueError`` naming ``name`` unless it is True or False (1, "no"
    and None are refused: a switch written as text is a typo, not a setting)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} = {value!r}; {name} must be True or False")
    return bool(value)


def check_choice(value, name: str, choices: Sequence) -> Any:
    """``value`` unchanged; ``ValueError`` naming ``name`` and the ``choices`` unless it is one of them."""
    if not isinstance(value, Hashable) or value not in choices:
        raise ValueError(f"{name} = {value!r}; {name} must be one of {tuple(choices)}")
    return value


def check_ordered(low: float, high: float, low_name: str, high_name: str) -> None:
    """``ValueError`` naming both unless ``low <= high`` (the two ends of a band or a range)."""
    if low > high:
        raise ValueError(f"{low_name} = {low} > {high_name} = {high}; {low_name} must be <= {high_name}")


def check_seed(seed, name: str = "seed") -> int | None:
    """A seed: an integer >= 0, or None for fresh OS entropy. A ``numpy.random.Generator`` is refused:
    a shared generator would not be owned (nor saved) by the object seeded with it."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} = {seed!r}; {name} must be a non-negative integer or None")
    return int(seed)


def check_count(k, n_candidates: int, name: str = "k") -> int:
    """Validate a number of prompts to choose from ``n_candidates`` candidates."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} = {k!r}; {name} must be an integer")
    k = int(k)
    if n_candidates == 0:
        raise ValueError("candidate_ids is empty; at least one candidate is needed")
    if k < 1:
        raise ValueError(f"{name} = {k}; {name} must be >= 1")
    if k > n_candidates:
        raise ValueError(
            f"{name} = {k} > len(candidate_ids) = {n_candidates}; cannot choose more prompts than "
            "there are candidates"
        )
    return k


def check_positions(values, name: str, size: int) -> np.ndarray:
    """Return ``values`` as an int64 array (m,) of distinct row positions in [0, ``size``), m >= 1;
    ``ValueError`` naming ``name`` and the first bad position otherwise."""
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional array of row positions; got shape {array.shape}")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers; got dtype {array.dtype}")
    array = array.astype(np.int64)
    outside = (array < 0) | (array >= size)
    if outside.any():
        position = int(np.argmax(outside))
        raise ValueError(f"{name}[{position}] = {array[position]}; {name} must lie in [0, {size})")
    order = np.argsort(array, kind="stable")
    repeated = np.flatnonzero(array[order][1:] == array[order][:-1])
    if repeated.size:
        position = int(order[repeated[0] + 1])
        raise ValueError(f"{name}[{position}] = {array[position]} is repeated; {name} must be distinct")
    return array


def check_probability(value, name: str) -> float:
    """``value`` as a Python float; ``ValueError`` naming ``name`` unless it is a real number in [0, 1]."""
    return check_number(value, name, minimum=0.0, maximum=1.0)


def check_band(band, name: str = "band") -> tuple[float, float]:
    """Validate a success-rate band ``(low, high)`` with 0 <= low <= high <= 1."""
    try:
        low, high = (float(bound) for bound in band)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {band!r}; {name} must be a pair (low, high)") from None
    check_probability(low, f"{name}[0]")
    check_probability(high, f"{name}[1]")
    check_ordered(low, high, f"{name}[0]", f"{name}[1]")
    return low, high


def generator_from_state(state, name: str) -> np.random.Generator:
    """A new PCG64 ``numpy.random.Generator`` set to the saved ``bit_generator.state`` ``state``;
    ``ValueError`` naming ``name`` if it is not such a state."""
    generator = np.random.default_rng()
    try:
        generator.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{name} is not a valid PCG64 generator state: {error}") from None
    return generator


def check_header(state, format: str, versions: Sequence[int], what: str, name: str = "state",
                 keys: Sequence[str] = (), format_key: str = "format", version_key: str = "version",
                 missing_version: int | None = None) -> int:
    """The version of a saved state (or file header) ``state``; ``ValueError`` unless it is a dict
    whose ``format_key`` is ``format``, whose ``version_key`` is one of ``versions`` and that holds
    every key of ``keys``. ``what``: the kind of state in words ("loop state": "not a mopps loop
    state"); ``name``: how errors call ``state``; ``missing_version``: the version of a state saved
    before it carried one (None: such a state is refused)."""
    if not isinstance(state, dict):
        raise ValueError(f"not a mopps {what} ({name} is a {type(state).__name__}, not a dict)")
    if state.get(format_key) != format:
        raise ValueError(f"not a mopps {what} ({name}[{format_key!r}] = {state.get(format_key)!r}; "
                         f"expected {format!r})")
    version = state.get(version_key, missing_version)
    if version not in versions:
        readable = " and ".join(str(known) for known in versions)
        raise ValueError(f"{what} version {version!r} is not supported (this mopps reads "
                         f"version{'s' if len(versions) > 1 else ''} {readable})")
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"{name} lacks {missing}")
    return version


def check_saved_ids(kind, ids, name: str = "ids", kind_name: str = "id_kind", unique: bool = True):
    """The ids of a saved record whose id kind is ``kind``, normalized and copied: an int64 array
    (kind "int", or empty for None) or a list of str (kind "str"). ``ValueError`` naming ``name`` /
    ``kind_name`` unless ``kind`` is None, "int" or "str", the ids are ids of that kind (none for
    None) and, with ``unique``, no id repeats. Every selector's ``_restore`` and the loop's ledger
    read their saved ids through this one function."""
    if kind not in (None, INT_KIND, STR_KIND):
        raise ValueError(f"{kind_name} = {kind!r}; it must be None, 'int' or 'str'")
    stored_kind, normalized = normalize_ids(ids, name)
    if stored_kind not in (None, kind):
        raise ValueError(f"{kind_name} = {kind!r} but {name} are {stored_kind} ids")
    if unique:
        require_unique(stored_kind, normalized, lambda position: f"{name}[{position}]")
    if kind == STR_KIND:
        return list(normalized)
    return np.array(normalized, dtype=np.int64)
