"""Pooling kernel against a scipy sparse-matrix product."""

from __future__ import annotations

import numpy as np
import pytest
from naive import pool_reference

from fastembed.pooling import weighted_mean_pool


@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["mean", "weighted"])
def test_pool_matches_sparse_product(kind):
    rng = np.random.default_rng(3)
    vocab, dim, n = 50, 7, 40
    lengths = rng.integers(0, 12, n)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(vocab, k, replace=False)) for k in lengths]).astype(np.int32)
    vectors = rng.standard_normal((vocab, dim)).astype(np.float32)
    trained = rng.random(vocab) > 0.2
    weights = trained.astype(np.float32) * (
        rng.random(vocab).astype(np.float32) + 0.5 if kind == "weighted" else 1
    )
    got, empty = weighted_mean_pool(indptr, indices, vectors, weights)
    want, want_empty = pool_reference(indptr, indices, vectors, weights)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(empty, want_empty)
    assert got.dtype == np.float32
    assert want_empty.any() and not want_empty.all()  # the case of cells with no trained token is covered


@pytest.mark.kernel
def test_region_context_matches_naive():
    """Each token's context is the mean of the non-empty cells holding it; tokens with weight 0, or held by no
    cell, get zeros (random cells, some empty, some tokens unweighted)."""
    from naive import pool_reference, region_context_reference

    from fastembed.pooling import region_context, weighted_mean_pool

    rng = np.random.default_rng(3)
    vocab, n = 40, 30
    rows = [np.sort(rng.choice(vocab, size=rng.integers(0, 8), replace=False)) for _ in range(n)]
    indptr = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int32)
    vectors = rng.normal(size=(vocab, 6)).astype(np.float32)
    weights = (rng.random(vocab) > 0.2).astype(np.float32)
    cells, empty = weighted_mean_pool(indptr, indices, vectors, weights)
    assert empty.any() and (~empty).any()
    got = region_context(indptr, indices, cells, empty, weights)
    want = region_context_reference(indptr, indices, cells, empty, weights)
    assert got.dtype == np.float32 and got.shape == (vocab, 6)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not got[weights == 0].any()
    naive_cells, _ = pool_reference(indptr, indices, vectors, weights)
    np.testing.assert_allclose(cells, naive_cells, atol=1e-5)
