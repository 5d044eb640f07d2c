"""The training memory estimate against what training allocates (tracemalloc sees every numpy/scipy array)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fastembed.kernels.sgns import train_sgns
from fastembed.kernels.warmstart import spectral_init
from fastembed.model.trainmem import training_bytes, warm_start_bytes


def _cells(n_cells: int, per_cell: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    indptr = np.arange(0, (n_cells + 1) * per_cell, per_cell, dtype=np.int64)
    indices = np.concatenate([np.sort(rng.choice(vocab, per_cell, replace=False)) for _ in range(n_cells)])
    return indptr, indices.astype(np.int32)


def _traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("n_cells", "per_cell", "vocab", "dim"), [(300, 200, 60_000, 16), (600, 400, 20_000, 32)]
)
def test_warm_start_peak_is_within_its_estimate(n_cells, per_cell, vocab, dim):
    indptr, indices = _cells(n_cells, per_cell, vocab)
    trained = np.zeros(vocab, dtype=bool)
    trained[indices] = True
    peak = _traced_peak(lambda: spectral_init(indptr, indices, vocab, dim, trained=trained, seed=1))
    estimate = warm_start_bytes(indices.size, n_cells, vocab, dim)
    assert peak <= estimate
    assert estimate <= 1.6 * peak  # an estimate, not a blanket bound


def test_training_estimate_counts_the_warm_start_vocabulary_blocks():
    """Regression: the estimate left out the warm start's dense vocabulary x (dimension + 50) blocks, so on a
    500,000-region universe it predicted 0.39 GB where training peaked at 1.5 GiB. A large vocabulary with few
    tokens is where that term dominates."""
    n_cells, per_cell, vocab, dim = 300, 150, 100_000, 16
    indptr, indices = _cells(n_cells, per_cell, vocab, seed=2)
    held = indptr.nbytes + indices.nbytes  # the caller's tokens, allocated before tracing
    peak = _traced_peak(
        lambda: train_sgns(
            indptr,
            indices,
            vocab,
            embedding_dim=dim,
            epochs=1,
            seed=0,
            threads=1,
            progress=False,
            init="spectral",
        )
    )
    estimate = training_bytes(indices.size, n_cells, vocab, dim)
    assert peak + held <= estimate
    assert estimate <= 2.0 * (peak + held)
