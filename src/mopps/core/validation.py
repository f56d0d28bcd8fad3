"""Boundary checks shared by every layer.

Each check raises ``ValueError`` naming the argument and the first bad position, in the style
``successes[3] = -1.0; successes must be >= 0``. Checks never mutate their inputs, so a caller that
validates everything before touching its state leaves that state unchanged on bad input.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np


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


def check_integer(value, name: str, minimum: int = 0) -> int:
    """``value`` as a Python int; ``ValueError`` naming ``name`` unless it is an integer (not a bool,
    not a float such as 2.0) and ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} = {value!r}; {name} must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name} = {value}; {name} must be an integer >= {minimum}")
    return int(value)


def check_number(value, name: str, minimum: float) -> float:
    """``value`` as a Python float; ``ValueError`` naming ``name`` unless it is a real number (not a
    bool, not a string such as "2", not None), finite and ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} = {value!r}; {name} must be a finite number >= {minimum}")
    number = float(value)
    if not (np.isfinite(number) and number >= minimum):
        raise ValueError(f"{name} = {value!r}; {name} must be a finite number >= {minimum}")
    return number


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


def check_probability(value: float, name: str) -> float:
    """Validate a scalar in [0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} = {value!r}; {name} must be a number in [0, 1]")
    value = float(value)
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} = {value}; {name} must lie in [0, 1]")
    return value


def check_band(band) -> tuple[float, float]:
    """Validate a success-rate band ``(low, high)`` with 0 <= low <= high <= 1."""
    try:
        low, high = (float(bound) for bound in band)
    except (TypeError, ValueError):
        raise ValueError(f"band = {band!r}; band must be a pair (low, high)") from None
    check_probability(low, "band[0]")
    check_probability(high, "band[1]")
    if low > high:
        raise ValueError(f"band = ({low}, {high}); band[0] must be <= band[1]")
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
