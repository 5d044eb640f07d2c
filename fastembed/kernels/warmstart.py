"""Spectral warm start for SGNS: region vectors initialised from the spectrum of the cells' similarity graph.

Skip-gram with negative sampling learns, implicitly, a low-rank factorisation of a shifted pointwise mutual
information matrix of co-occurring tokens (Levy & Goldberg 2014). A truncated SVD of a normalised cell x region
matrix already gives the dominant directions of that co-occurrence structure in a couple of seconds. Starting
SGNS from it, instead of from word2vec's tiny random vectors, spends the epochs refining the geometry rather than
discovering it: on granja2019, 10 epochs from the warm start reach the quality that 30-40 epochs from random
vectors reach (bench/RESULTS-archive.md).

The matrix is the one behind SnapATAC2's spectral embedding (Zhang et al. 2024): each cell's binary row weighted
by the regions' inverse document frequency and scaled to unit length (so that ``Y Y^T`` is the cosine similarity
of the cells), then divided by the square root of the cell's degree in that similarity graph. The left singular
vectors of this ``Z = D^-1/2 Y`` are the leading eigenvectors of the normalised graph ``D^-1/2 Y Y^T D^-1/2``,
and ``Z V`` (the spectral embedding weighted by the singular values) is a weighted sum of the cell's rows of
``V``: row ``r`` of ``V`` times its singular value is where region ``r`` sits in that embedding. Measured against
the TF-IDF matrix of LSI that version 0.4 used, with the more accurate SVD below (bench/RESULTS-archive.md), the trained
models gain most on small data, where this normalised graph is what lets SnapATAC2 lead (40 random 400-cell draws:
transfer accuracy +0.014 ± 0.006, Leiden ARI +0.007), and granja2019's accuracy rose by 0.01.

The SVD is the randomized range finder of Halko, Martinsson & Tropp (2011) with a few power iterations, on a
scipy CSR matrix: its cost is a handful of sparse x thin-dense products, linear in the number of tokens.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["spectral_init", "similarity_matrix", "INIT_NORM"]

INIT_NORM = 1.5
"""Length of every initial region vector. word2vec's random rows have length ~0.03 at dim 100 and trained
rows reach ~2-5; 1.5 is large enough to carry the spectral directions into the first updates of the output
vectors and small enough for SGNS to rescale them (0.5 and 3.0 did worse on granja2019, bench/RESULTS-archive.md)."""

# The spectrum of these matrices is flat: with 10 extra columns and 2 power iterations the directions captured 92-94%
# of the energy of the true top 100 (400 to 5,000 cells), with 50 and 4 97-99%, for ~0.9 s more on granja2019
# (14k cells). On 400-cell draws that accuracy is worth +0.014 transfer accuracy after training (bench/RESULTS-archive.md).
_OVERSAMPLE = 50
_POWER_ITERATIONS = 4
_ISOLATED = 1e-4
"""Summed cosine similarity to the other cells at or below which a cell counts as isolated (see similarity_matrix)."""


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of the tall matrix ``a`` (float32 (n, l) -> float32 (n, r), r <= l).

    Through the eigen-decomposition of the small Gram matrix rather than a QR of ``a``: a few thin matrix
    products instead of a LAPACK factorisation of the tall matrix (several times faster here), and
    directions with a negligible eigenvalue (a rank-deficient, tiny dataset) are dropped instead of amplified.
    """
    lam, w = np.linalg.eigh(_gram(a))
    keep = lam > lam.max() * 1e-10
    return a @ (w[:, keep] / np.sqrt(lam[keep])).astype(np.float32)


_GRAM_ROWS = 65_536
"""Rows of the tall matrix converted to float64 at a time by :func:`_gram`."""


def _gram(a: np.ndarray) -> np.ndarray:
    """``a.T @ a`` in float64 for a tall float32 ``a`` (n, l), accumulated over blocks of rows.

    The Gram matrix needs float64 (its eigenvalues span many orders of magnitude), but a float64 copy of the
    whole of ``a`` would be the warm start's largest allocation on an atlas vocabulary: 500,000 regions x 82
    columns is 328 MB, twice over for the two operands.
    """
    gram = np.zeros((a.shape[1], a.shape[1]), dtype=np.float64)
    for lo in range(0, a.shape[0], _GRAM_ROWS):
        block = a[lo : lo + _GRAM_ROWS].astype(np.float64)
        gram += block.T @ block
    return gram


def truncated_svd(x: sp.csr_matrix, rank: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Top singular values and right singular vectors of a sparse matrix, by a randomized range finder.

    Parameters
    ----------
    x : scipy CSR float32 (n, m)
    rank : int
        Directions wanted (at most ``min(n, m)``).
    seed : int
        Seeds the Gaussian test matrix.

    Returns
    -------
    s : float32 (r,)
        Singular values, decreasing; ``r <= rank`` (directions with a negligible value are dropped).
    vt : float32 (r, m)
        The matching right singular vectors (orthonormal rows).
    """
    n, m = x.shape
    xt = x.T.tocsr()
    width = min(rank + _OVERSAMPLE, n, m)
    rng = np.random.default_rng(seed % 2**63)
    q = _orthonormal(x @ rng.standard_normal((m, width), dtype=np.float32))
    for _ in range(_POWER_ITERATIONS):
        q = _orthonormal(x @ _orthonormal(xt @ q))
    # B = Q^T X is small (width x m); its right singular vectors are X's top ones. They follow from the
    # eigen-decomposition of the width x width matrix B B^T: V = B^T U / s.
    # B^T stays float32 (m x width: the vocabulary's size); only the small matrices are float64.
    bt = xt @ q
    lam, u = np.linalg.eigh(_gram(bt))
    order = np.argsort(lam)[::-1][:rank]
    s = np.sqrt(np.maximum(lam[order], 0.0))
    keep = s > s[0] * 1e-6 if s.size and s[0] > 0 else np.zeros(s.size, dtype=bool)
    s, u = s[keep], u[:, order][:, keep]
    return s.astype(np.float32), (bt @ (u / s).astype(np.float32)).T


def similarity_matrix(x: sp.csr_matrix) -> sp.csr_matrix:
    """The degree-normalised cosine matrix ``Z = D^-1/2 Y`` of a binary cell x region matrix.

    Parameters
    ----------
    x : scipy CSR float32 (n_cells, n_regions)
        1 where a cell holds a region, no explicit zeros.

    Returns
    -------
    scipy CSR float32 (n_cells, n_regions)
        ``Y`` is ``x`` with every region weighted by ``log(1 + n_cells / cells holding it)`` and every row scaled to
        unit length; row ``i`` of ``Z`` is row ``i`` of ``Y`` divided by ``sqrt(d_i)``, where ``d_i`` is cell
        ``i``'s summed cosine similarity to the other cells. Cells with no region, or sharing none with any other
        cell (``d_i = 0``: isolated in the graph), get zero rows and so take no part in the SVD.
    """
    n_cells = x.shape[0]
    df = np.asarray(x.sum(axis=0)).ravel()
    idf = np.log1p(n_cells / np.maximum(df, 1.0)).astype(np.float32)
    y = (x @ sp.diags(idf)).tocsr()
    length = np.sqrt(np.asarray(y.multiply(y).sum(axis=1)).ravel())
    y = (sp.diags(np.divide(1.0, length, out=np.zeros_like(length), where=length > 0)) @ y).tocsr()
    # Degree in the cosine graph without self-loops: y_i . (sum of all rows) - |y_i|^2, where |y_i|^2 is 1 (or 0).
    held = (length > 0).astype(np.float32)
    degree = y @ np.asarray(y.sum(axis=0), dtype=np.float32).ravel() - held
    # The self-term (1) makes the rounding error of an isolated cell's degree ~1e-7 either side of 0, while one
    # rare region shared with one other cell already gives a cosine of ~1e-3 even at atlas depth: a floor of 1e-4
    # separates the two without depending on the other cells (a median would fail when most cells are isolated).
    connected = degree > _ISOLATED
    scale = np.zeros_like(degree)
    scale[connected] = 1.0 / np.sqrt(degree[connected])
    z = (sp.diags(scale) @ y).tocsr()
    z.eliminate_zeros()
    return z


def spectral_init(
    indptr: np.ndarray,
    indices: np.ndarray,
    vocab_size: int,
    embedding_dim: int,
    *,
    trained: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Initial input vectors from a truncated SVD of the cells' normalised similarity matrix.

    Parameters
    ----------
    indptr : int64[n_cells + 1], indices : int32[nnz]
        The cells' tokens (CSR; a cell's tokens are a set, so every entry is 1).
    vocab_size, embedding_dim : int
        Shape of the result.
    trained : bool[vocab_size]
        Tokens that take part in training; the others get zero rows and do not enter the SVD.
    seed : int
        Seeds the random test matrix (a uint64 seed from :func:`fastembed._rng.new_seed` is fine).

    Returns
    -------
    float32[vocab_size, embedding_dim]
        Row t is token t's coordinates in the top right singular directions of :func:`similarity_matrix`, scaled
        by the singular values (its place in the spectral embedding), rescaled to length ``INIT_NORM``. When
        there are fewer singular directions than ``embedding_dim`` (a tiny dataset), the remaining columns stay
        zero; a trained token held only by isolated cells gets a zero row.
    """
    n_cells = indptr.size - 1
    data = trained[indices].astype(np.float32)
    # scipy keeps the caller's index arrays when it can, and eliminate_zeros compacts them in place: a token
    # outside ``trained`` would scramble the caller's cells. Copied only then (train_sgns drops such tokens
    # before calling, and an atlas's indices are gigabytes).
    dropped = not data.all()
    x = sp.csr_matrix((data, indices, indptr), shape=(n_cells, vocab_size), copy=dropped)
    if dropped:
        x.eliminate_zeros()
    z = similarity_matrix(x)

    rank = int(min(embedding_dim, n_cells - 1, int(trained.sum()) - 1))
    out = np.zeros((vocab_size, embedding_dim), dtype=np.float32)
    if rank < 1 or z.nnz == 0:
        return out
    s, vt = truncated_svd(z, rank, seed=seed)
    if s.size == 0:
        return out
    rank = s.size
    # float32 (vocabulary, rank), scaled in place: a copy would be another vocabulary-sized block
    v = vt.T * s
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    np.divide(v, norms, out=v, where=norms > 0)  # a zero row (norm 0) stays zero
    v *= np.float32(INIT_NORM)
    out[:, :rank] = v
    out[~trained] = 0.0
    return out
