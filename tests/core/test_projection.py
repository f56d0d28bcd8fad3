"""Seeded random projections: deterministic in their arguments, norm-preserving, chunk-consistent."""

import numpy as np
import pytest

from mopps.core.projection import KINDS, matrix_digest, project, projection_matrix


@pytest.mark.parametrize("kind", KINDS)
def test_matrix_is_a_pure_function_of_its_arguments(kind):
    first = projection_matrix(300, 16, seed=3, kind=kind)
    assert first.dtype == np.float32 and first.shape == (300, 16)
    assert np.array_equal(first, projection_matrix(300, 16, seed=3, kind=kind))
    assert not np.array_equal(first, projection_matrix(300, 16, seed=4, kind=kind))
    assert matrix_digest(300, 16, 3, kind) == matrix_digest(300, 16, 3, kind)
    assert matrix_digest(300, 16, 3, kind) != matrix_digest(300, 16, 4, kind)


def test_achlioptas_entries_are_sparse_signs_with_the_right_frequencies():
    matrix = projection_matrix(1000, 50, seed=0, kind="achlioptas")
    scale = np.float32(np.sqrt(3.0 / 50))
    assert set(np.unique(matrix).tolist()) == {-scale, 0.0, scale}
    shares = [np.mean(matrix == -scale), np.mean(matrix == 0), np.mean(matrix == scale)]
    assert np.allclose(shares, [1 / 6, 2 / 3, 1 / 6], atol=0.01)


@pytest.mark.parametrize("kind", KINDS)
def test_distances_survive_the_projection(kind):
    rng = np.random.default_rng(1)
    points = rng.standard_normal((60, 2048))
    projected = project(points, 512, seed=7, kind=kind)
    assert projected.dtype == np.float32 and projected.shape == (60, 512)
    rows, cols = np.triu_indices(60, k=1)
    before = np.linalg.norm(points[rows] - points[cols], axis=1)
    after = np.linalg.norm(projected[rows] - projected[cols], axis=1)
    ratio = after / before
    # JL at d = 512: distortion of a few percent per pair, mean ratio ~1 (E|xR|^2 = |x|^2).
    assert abs(np.mean(ratio**2) - 1.0) < 0.02
    assert ratio.min() > 0.8 and ratio.max() < 1.2


def test_chunks_projected_separately_land_in_the_same_space():
    points = np.random.default_rng(2).standard_normal((10, 64)).astype(np.float32)
    whole = project(points, 8, seed=5)
    pieces = np.concatenate([project(points[:3], 8, seed=5), project(points[3:], 8, seed=5)])
    # Same matrix; BLAS may round differently for different row counts, so not bit-equal.
    assert np.allclose(whole, pieces, rtol=1e-6, atol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="output_dim = 20 > input_dim = 10"):
        projection_matrix(10, 20, seed=0)
    with pytest.raises(ValueError, match="kind = 'sparse'"):
        projection_matrix(10, 2, seed=0, kind="sparse")
    with pytest.raises(ValueError, match="seed = -1"):
        projection_matrix(10, 2, seed=-1)
    with pytest.raises(ValueError, match="output_dim = 0"):
        projection_matrix(10, 0, seed=0)
    bad = np.ones((4, 10))
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"features\[2\]"):
        project(bad, 2, seed=0)
    with pytest.raises(ValueError, match="shape"):
        project(np.ones(10), 2, seed=0)
