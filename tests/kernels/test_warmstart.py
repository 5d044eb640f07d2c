"""Spectral warm start and the data-derived epochs, against plain numpy oracles on real (demo) cells."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import demo_cells

import fastembed as fe
from fastembed.datasets import demo_peaks_path
from fastembed.sgns import (
    LARGE_DATA_CELLS,
    MIN_EPOCHS,
    PAIR_BUDGET,
    SMALL_DATA_CELLS,
    SMALL_PAIRS_PER_OCCURRENCE,
    auto_epochs,
    train_sgns,
)
from fastembed.warmstart import INIT_NORM, similarity_matrix, spectral_init, truncated_svd


@pytest.fixture(scope="module")
def tokens():
    return fe.tokenize_cells(demo_cells(800, 2), demo_peaks_path())


def _binary(tokens, trained):
    return sp.csr_matrix(
        (trained[tokens.indices].astype(np.float64), tokens.indices, tokens.indptr),
        shape=(len(tokens), tokens.vocab_size),
    ).toarray()


def _similarity_dense(x):
    """Oracle: the degree-normalised cosine matrix from its definition, with the n x n similarity graph."""
    n = x.shape[0]
    y = x * np.log1p(n / np.maximum(x.sum(0), 1))
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-300)
    graph = y @ y.T
    np.fill_diagonal(graph, 0.0)  # a cell is not its own neighbour
    degree = graph.sum(1)
    scale = np.zeros(n)
    scale[degree > 1e-9] = 1 / np.sqrt(degree[degree > 1e-9])
    return y * scale[:, None]


def test_similarity_matrix_matches_its_definition(tokens):
    trained = np.zeros(tokens.vocab_size, bool)
    trained[np.unique(tokens.indices)] = True
    x = _binary(tokens, trained)
    z = similarity_matrix(sp.csr_matrix(x.astype(np.float32)))
    assert isinstance(z, sp.csr_matrix) and z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.toarray(), _similarity_dense(x), rtol=1e-4, atol=1e-7)


def test_similarity_matrix_isolated_and_empty_cells_get_zero_rows():
    # Cells 0 and 1 share token 1; cell 2 holds only token 3, which no other cell holds; cell 3 is empty.
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32))
    z = similarity_matrix(x).toarray()
    assert np.isfinite(z).all()
    assert z[0].any() and z[1].any() and not z[2].any() and not z[3].any()
    v = spectral_init(x.indptr.astype(np.int64), x.indices, 4, 3, trained=np.ones(4, bool), seed=0)
    assert np.isfinite(v).all() and not v[3].any()


def test_similarity_matrix_most_cells_isolated(recwarn):
    # Two connected cells among five isolated ones, each with private regions: the isolated cells' degrees are
    # rounding noise around 0, which must neither warn nor be blown up into huge rows.
    rows = [[0, 1], [1, 2]] + [[3 + 3 * k, 4 + 3 * k, 5 + 3 * k] for k in range(5)]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int32)
    x = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(7, 18))
    z = similarity_matrix(x)
    assert z.dtype == np.float32
    np.testing.assert_allclose(
        z.toarray(), _similarity_dense(x.toarray().astype(np.float64)), rtol=1e-4, atol=1e-7
    )
    assert not z[2:].toarray().any() and z[:2].toarray().any()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_truncated_svd_matches_numpy(tokens):
    trained = np.zeros(tokens.vocab_size, bool)
    trained[np.unique(tokens.indices)] = True
    dense = _similarity_dense(_binary(tokens, trained))
    s, vt = truncated_svd(sp.csr_matrix(dense.astype(np.float32)), 8, seed=0)
    _, s_ref, vt_ref = np.linalg.svd(dense, full_matrices=False)
    assert s.shape == (8,) and vt.shape == (8, tokens.vocab_size)
    np.testing.assert_allclose(vt @ vt.T, np.eye(8), atol=1e-4)  # orthonormal directions
    # A randomized range finder with few power iterations is close, not exact: the leading value within 1%, the
    # others within 10%, and the directions capture at least 95% of what the best rank-8 subspace captures.
    np.testing.assert_allclose(s[0], s_ref[0], rtol=1e-2)
    np.testing.assert_allclose(s, s_ref[:8], rtol=0.1)
    assert np.all(s <= s_ref[:8] * (1 + 1e-4))  # never above the true values (a Ritz bound)
    captured = np.linalg.norm(dense @ vt.T) ** 2
    assert captured >= 0.95 * np.sum(s_ref[:8] ** 2)


def test_spectral_init_rows(tokens):
    trained = np.zeros(tokens.vocab_size, bool)
    trained[np.unique(tokens.indices)] = True
    v = spectral_init(tokens.indptr, tokens.indices, tokens.vocab_size, 8, trained=trained, seed=0)
    assert v.shape == (tokens.vocab_size, 8) and v.dtype == np.float32
    assert not v[~trained].any()
    np.testing.assert_allclose(np.linalg.norm(v[trained], axis=1), INIT_NORM, rtol=1e-4)
    # Each row points along its token's coordinates in the top singular directions, scaled by the singular
    # values (the oracle matrix, the same randomized SVD: an error in the matrix or in the scaling shows).
    oracle = sp.csr_matrix(_similarity_dense(_binary(tokens, trained)).astype(np.float32))
    s, vt = truncated_svd(oracle, 8, seed=0)
    ref = (vt.T * s)[trained]
    cos = np.sum(ref * v[trained], axis=1) / np.linalg.norm(ref, axis=1) / INIT_NORM
    np.testing.assert_allclose(cos, 1.0, atol=1e-3)


def test_spectral_init_leaves_the_callers_cells_alone(tokens):
    # Tokens outside ``trained`` are left out of the SVD; they must not be cut out of the caller's arrays (scipy
    # shares index arrays with a matrix built on them, and dropping entries compacts them in place).
    trained = np.zeros(tokens.vocab_size, bool)
    trained[np.unique(tokens.indices)] = True
    trained[np.unique(tokens.indices)[::3]] = False
    indptr, indices = tokens.indptr.copy(), tokens.indices.copy()
    v = spectral_init(indptr, indices, tokens.vocab_size, 8, trained=trained, seed=0)
    np.testing.assert_array_equal(indices, tokens.indices)
    np.testing.assert_array_equal(indptr, tokens.indptr)
    assert not v[~trained].any() and np.linalg.norm(v[trained], axis=1).min() > 0


def test_spectral_init_is_deterministic_and_tiny_data_is_safe(tokens):
    trained = np.zeros(tokens.vocab_size, bool)
    trained[np.unique(tokens.indices)] = True
    a = spectral_init(tokens.indptr, tokens.indices, tokens.vocab_size, 6, trained=trained, seed=5)
    b = spectral_init(tokens.indptr, tokens.indices, tokens.vocab_size, 6, trained=trained, seed=5)
    np.testing.assert_array_equal(a, b)
    # Two cells, three tokens: at most one direction; no NaN, no crash.
    tiny = spectral_init(
        np.array([0, 2, 4]), np.array([0, 1, 1, 2], np.int32), 3, 5, trained=np.ones(3, bool), seed=0
    )
    assert np.isfinite(tiny).all() and not tiny[:, 1:].any()


def test_spectral_init_trains_and_is_reproducible(tokens):
    kw = dict(embedding_dim=8, epochs=2, seed=1, threads=1, progress=False, init="spectral")
    a = train_sgns(tokens.indptr, tokens.indices, tokens.vocab_size, **kw)
    b = train_sgns(tokens.indptr, tokens.indices, tokens.vocab_size, **kw)
    np.testing.assert_array_equal(a.w_in, b.w_in)
    rnd = train_sgns(tokens.indptr, tokens.indices, tokens.vocab_size, **{**kw, "init": "random"})
    assert not np.array_equal(a.w_in, rnd.w_in)
    with pytest.raises(ValueError, match="init must be"):
        train_sgns(tokens.indptr, tokens.indices, tokens.vocab_size, **{**kw, "init": "lsi"})


def _sparse_cells(n_cells, empty=0):
    """``n_cells`` cells of two tokens each, every token in two cells (so the pair budget never binds), then
    ``empty`` cells without tokens."""
    indices = (np.arange(2 * n_cells, dtype=np.int32) + 1) // 2 % n_cells
    indptr = np.concatenate([np.arange(0, 2 * n_cells + 1, 2), np.full(empty, 2 * n_cells)])
    return indptr, indices, n_cells


def test_auto_epochs_follows_the_pairs_per_region(tokens):
    per_token = tokens.indices.size / np.unique(tokens.indices).size
    for window in (5, 20):
        # 800 cells: a small dataset, so the small cap applies when the budget asks for more.
        small_cap = max(MIN_EPOCHS, int(np.ceil(SMALL_PAIRS_PER_OCCURRENCE / (window + 1))))
        expected = int(np.clip(np.ceil(PAIR_BUDGET / (per_token * (window + 1))), MIN_EPOCHS, small_cap))
        assert auto_epochs(tokens.indptr, tokens.indices, tokens.vocab_size, window_size=window) == expected
        # Many cells per region (an atlas): the minimum; a handful of cells: the small cap.
        many = np.tile(np.arange(10, dtype=np.int32), 50_000)
        assert auto_epochs(np.arange(0, many.size + 1, 10), many, 10, window_size=window) == MIN_EPOCHS
        few = np.array([0, 1, 2, 0, 1, 2], np.int32)
        assert auto_epochs(np.array([0, 3, 6]), few, 3, window_size=window) == small_cap
    # A wider window gives each occurrence more pairs per pass, so it gets fewer passes, never more.
    assert auto_epochs(tokens.indptr, tokens.indices, tokens.vocab_size, window_size=20) <= auto_epochs(
        tokens.indptr, tokens.indices, tokens.vocab_size, window_size=5
    )
    # A model trained without epochs records the derived count (at its default window).
    m = fe.ScEmbed(embedding_dim=4, seed=0, threads=1, n_components=None)
    expected = auto_epochs(tokens.indptr, tokens.indices, tokens.vocab_size, window_size=m.window_size)
    assert m.train(tokens, progress=False, init="random").training_info["epochs"] == expected


def test_auto_epochs_cap_grows_with_the_cells():
    """Where the pair budget does not bind, the passes rise from the small cap (up to SMALL_DATA_CELLS) to the
    large one (from LARGE_DATA_CELLS), never falling in between; cells without a trained token do not count."""
    mid = int(np.sqrt(SMALL_DATA_CELLS * LARGE_DATA_CELLS))  # halfway in log(cells)
    sizes = [
        100,
        SMALL_DATA_CELLS,
        SMALL_DATA_CELLS + 300,
        mid,
        LARGE_DATA_CELLS - 300,
        LARGE_DATA_CELLS,
        20_000,
    ]
    got = [auto_epochs(*_sparse_cells(n), window_size=5) for n in sizes]
    assert got[0] == got[1] == 20
    assert got[-2] == got[-1] == 40
    assert got == sorted(got) and 20 < got[2] < got[3] < got[4] < 40
    assert got[3] == 30  # halfway between the caps
    # Padding a small dataset with empty cells, or with cells whose tokens are all below min_count, changes
    # nothing: there is nothing to learn from them.
    assert auto_epochs(*_sparse_cells(1_500, empty=20_000), window_size=5) == 20
    indptr, indices, vocab = _sparse_cells(1_500)
    rare = np.arange(vocab, vocab + 20_000, dtype=np.int32)  # 20,000 cells, each with a token of its own
    padded = np.concatenate([indptr, indptr[-1] + np.arange(1, rare.size + 1)])
    both = np.concatenate([indices, rare])
    assert auto_epochs(padded, both, vocab + rare.size, window_size=5, min_count=2) == 20
    assert auto_epochs(padded, both, vocab + rare.size, window_size=5, min_count=1) == 40


def test_auto_epochs_rejects_mismatched_csr():
    """The counting kernels have no bounds checks, so bad CSR arrays must raise before they run."""
    indices = np.array([0, 1, 2, 1], np.int32)
    with pytest.raises(ValueError, match="indptr must start at 0"):
        auto_epochs(np.array([0, 2, 9]), indices, 3, window_size=5)
    with pytest.raises(ValueError, match="token id 7 is outside the vocabulary"):
        auto_epochs(np.array([0, 2, 4]), np.array([0, 1, 7, 1], np.int32), 3, window_size=5)
    assert auto_epochs(np.array([0, 2, 4]), indices, 3, window_size=5) == 20
