"""The prefetch hint is a no-op for results: it compiles for the kernels' row types and changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from fastembed._prefetch import prefetch_row
from fastembed.settings import SERIAL


# --- naive reference: a row sum without any prefetching --------------------------------------------------------
def ref_row_sums(matrix, rows):
    return np.array([matrix[r].sum() for r in rows], dtype=np.float64)


@njit(**SERIAL)
def _row_sums_with_prefetch(matrix, rows):
    out = np.zeros(rows.size)
    for i in range(rows.size):
        if i + 1 < rows.size:
            prefetch_row(matrix, rows[i + 1])
        for d in range(matrix.shape[1]):
            out[i] += matrix[rows[i], d]
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("row_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(50, 100), (7, 3), (4, 17)])
def test_prefetch_changes_nothing(row_dtype, shape):
    matrix = np.random.default_rng(0).random(shape, dtype=np.float32)
    rows = np.array([0, shape[0] - 1, 2, 1, 2], dtype=row_dtype)
    np.testing.assert_allclose(_row_sums_with_prefetch(matrix, rows), ref_row_sums(matrix, rows), rtol=1e-6)
