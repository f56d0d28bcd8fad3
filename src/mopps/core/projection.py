"""Seeded random projections that shrink wide feature vectors (embeddings) to a few dimensions.

A model's pooled hidden states are 896-8,192 numbers per prompt; a selector that learns a predictor
over features needs far fewer. By the Johnson-Lindenstrauss lemma a random linear map to d
dimensions keeps distances and inner products between prompts to within a factor (1 +- eps) for
d ~ log(m) / eps^2, so the projected features keep what a linear predictor can use while costing
4 * d bytes per prompt instead of 4 * d_in.

The matrix is a pure function of ``(input_dim, output_dim, seed, kind)``, so prompts embedded in
several chunks or sessions land in the same space when projected with the same arguments.
:func:`matrix_digest` fingerprints the matrix so a file can record which one it used: numpy does
not promise identical random streams across its releases, and mixing two spaces would be silent.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mopps.core.validation import check_choice, check_integer

KINDS = ("gaussian", "achlioptas")


def projection_matrix(input_dim: int, output_dim: int, seed: int, kind: str = "gaussian") -> np.ndarray:
    """The float32 matrix (input_dim, output_dim) that :func:`project` multiplies by.

    ``kind="gaussian"``: entries N(0, 1) / sqrt(output_dim). ``kind="achlioptas"`` (Achlioptas 2003):
    entries sqrt(3 / output_dim) * {+1 with probability 1/6, 0 with 2/3, -1 with 1/6}; two thirds
    zeros, same guarantee. Both scalings keep squared norms in expectation: E|x R|^2 = |x|^2.
    ``seed``: integer >= 0 for ``numpy.random.default_rng``.
    """
    check_integer(input_dim, "input_dim", minimum=1)
    check_integer(output_dim, "output_dim", minimum=1)
    if output_dim > input_dim:
        raise ValueError(
            f"output_dim = {output_dim} > input_dim = {input_dim}; a projection only shrinks features"
        )
    check_integer(seed, "seed")
    check_choice(kind, "kind", KINDS)
    rng = np.random.default_rng(int(seed))
    shape = (int(input_dim), int(output_dim))
    if kind == "gaussian":
        matrix = rng.standard_normal(shape, dtype=np.float32)
        matrix *= np.float32(1.0 / np.sqrt(output_dim))
        return matrix
    # Six equally likely outcomes: 0 -> -1, 5 -> +1, 1..4 -> 0.
    outcome = rng.integers(0, 6, size=shape, dtype=np.int8)
    signs = (outcome == 5).astype(np.float32) - (outcome == 0).astype(np.float32)
    signs *= np.float32(np.sqrt(3.0 / output_dim))
    return signs


def project(features, output_dim: int, seed: int, kind: str = "gaussian") -> np.ndarray:
    """``features`` (m, d_in) times :func:`projection_matrix` (d_in, output_dim): float32 (m, output_dim).

    ``features``: finite numbers, shape (m, d_in). Raises ``ValueError`` naming ``features`` and the
    first bad row for a non-finite entry.
    """
    array = np.asarray(features, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"features must have shape (m, d_in); got shape {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise ValueError(f"features[{row}] has a non-finite entry; features must be finite")
    return array @ projection_matrix(array.shape[1], output_dim, seed, kind)


def matrix_digest(input_dim: int, output_dim: int, seed: int, kind: str = "gaussian") -> str:
    """16 hex characters of SHA-256 over the projection matrix's bytes (little-endian float32)."""
    matrix = projection_matrix(input_dim, output_dim, seed, kind)
    return hashlib.sha256(matrix.astype("<f4", copy=False).tobytes()).hexdigest()[:16]
