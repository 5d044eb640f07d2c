"""Numba kernels that pool region vectors into cell vectors."""

from __future__ import annotations

import numba
import numpy as np

from ._config import PARALLEL_FAST


@numba.njit(**PARALLEL_FAST)
def _weighted_mean(indptr, indices, vectors, weights, out):
    n_cells = indptr.size - 1
    dim = vectors.shape[1]
    empty = np.zeros(n_cells, dtype=np.bool_)
    for c in numba.prange(n_cells):
        row = out[c]
        row[:] = 0.0
        total = 0.0
        for p in range(indptr[c], indptr[c + 1]):
            t = indices[p]
            w = weights[t]
            if w == 0.0:
                continue
            total += w
            v = vectors[t]
            for j in range(dim):
                row[j] += w * v[j]
        if total > 0.0:
            inv = np.float32(1.0 / total)
            for j in range(dim):
                row[j] *= inv
        else:
            empty[c] = True
    return empty


def weighted_mean_pool(indptr, indices, vectors, weights, out=None):
    """Weighted mean of each cell's token vectors.

    Parameters
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (n_tokens,)
        Cell ``c`` holds tokens ``indices[indptr[c]:indptr[c+1]]``.
    vectors : np.ndarray of float32, shape (vocab_size, dim)
    weights : np.ndarray of float32, shape (vocab_size,)
        Weight of each token; 0 excludes it (e.g. untrained tokens). Plain mean pooling is weights of 1
        for trained tokens.
    out : np.ndarray of float32, shape (n_cells, dim), optional
        Written in place if given.

    Returns
    -------
    out : np.ndarray of float32, shape (n_cells, dim)
        ``sum_t w_t v_t / sum_t w_t`` per cell; zeros for a cell with no token of positive weight.
    empty : np.ndarray of bool, shape (n_cells,)
        Cells that got zeros.
    """
    n_cells = indptr.size - 1
    if out is None:
        out = np.empty((n_cells, vectors.shape[1]), dtype=np.float32)
    empty = _weighted_mean(np.ascontiguousarray(indptr, dtype=np.int64), np.ascontiguousarray(indices, dtype=np.int32),
                           np.ascontiguousarray(vectors, dtype=np.float32),
                           np.ascontiguousarray(weights, dtype=np.float32), out)
    return out, empty
