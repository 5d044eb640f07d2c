"""Numba kernels that pool region vectors into cell vectors."""

from __future__ import annotations

import numba
import numpy as np

from fastembed.kernels.projection import POOL_BOTH
from fastembed.settings import PARALLEL_FAST, SERIAL_FAST

# Cells per parallel work unit: each unit reuses one accumulator buffer.
_CHUNK = 256


@numba.njit(**PARALLEL_FAST)
def _weighted_mean(indptr, indices, region_vectors, weights, out):
    n_cells = indptr.size - 1
    dim = region_vectors.shape[1]
    empty = np.zeros(n_cells, dtype=np.bool_)
    n_chunks = (n_cells + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(n_chunks):
        # A thread-local accumulator (not a view of `out`) lets LLVM vectorise the inner loop, and four
        # token rows per pass keep several independent loads in flight: ~1.7x over one row per pass,
        # since gathering random rows of `region_vectors` is memory-bound (bench/encode.py).
        acc = np.empty(dim, dtype=np.float32)
        for c in range(chunk * _CHUNK, min(n_cells, (chunk + 1) * _CHUNK)):
            acc[:] = 0.0
            total = 0.0
            p = indptr[c]
            end = indptr[c + 1]
            while p + 3 < end:
                t0, t1, t2, t3 = indices[p], indices[p + 1], indices[p + 2], indices[p + 3]
                w0, w1, w2, w3 = weights[t0], weights[t1], weights[t2], weights[t3]
                total += w0 + w1 + w2 + w3
                for j in range(dim):
                    acc[j] += (w0 * region_vectors[t0, j] + w1 * region_vectors[t1, j]) + (
                        w2 * region_vectors[t2, j] + w3 * region_vectors[t3, j]
                    )
                p += 4
            while p < end:
                t0 = indices[p]
                w0 = weights[t0]
                total += w0
                for j in range(dim):
                    acc[j] += w0 * region_vectors[t0, j]
                p += 1
            if total > 0.0:
                inv = np.float32(1.0 / total)
                for j in range(dim):
                    out[c, j] = acc[j] * inv
            else:
                out[c, :] = 0.0
                empty[c] = True
    return empty


def weighted_mean_pool(indptr, indices, region_vectors, weights, out=None, *, name: str = "the tokens"):
    """Weighted mean of each cell's token vectors.

    Parameters
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (n_tokens,)
        Cell ``c`` holds tokens ``indices[indptr[c]:indptr[c+1]]``.
    region_vectors : np.ndarray of float32, shape (vocab_size, dim)
    weights : np.ndarray of float32, shape (vocab_size,)
        Weight of each token; 0 excludes it (e.g. untrained tokens). Plain mean pooling is weights of 1
        for trained tokens.
    out : np.ndarray of float32, shape (n_cells, dim), optional
        Written in place if given.
    name : str
        How messages name the tokens (e.g. their file).

    Returns
    -------
    out : np.ndarray of float32, shape (n_cells, dim)
        ``sum_t w_t v_t / sum_t w_t`` per cell; zeros for a cell with no token of positive weight.
    empty : np.ndarray of bool, shape (n_cells,)
        Cells that got zeros.

    Raises
    ------
    ValueError
        ``indptr`` that does not describe ``indices``, a token id outside ``[0, vocab_size)``, or shapes that
        do not fit; checked here because the kernel does not check bounds.
    """
    indptr, indices = np.asarray(indptr), np.asarray(indices)
    region_vectors = np.ascontiguousarray(region_vectors, dtype=np.float32)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    # Check before narrowing to int32: a cast would wrap an id of 2**32 + 5 to a valid-looking 5.
    _check_inputs(indptr, indices, region_vectors, weights, name)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    n_cells = indptr.size - 1
    if out is None:
        out = np.empty((n_cells, region_vectors.shape[1]), dtype=np.float32)
    elif out.shape != (n_cells, region_vectors.shape[1]) or out.dtype != np.float32:
        raise ValueError(
            f"out must be float32 of shape {(n_cells, region_vectors.shape[1])}, got {out.dtype} {out.shape}"
        )
    empty = _weighted_mean(indptr, indices, region_vectors, weights, out)
    return out, empty


def _check_inputs(indptr, indices, region_vectors, weights, name: str) -> None:
    if region_vectors.ndim != 2 or weights.shape != (region_vectors.shape[0],):
        raise ValueError(
            f"vectors must be (vocab_size, dim) and weights (vocab_size,), got {region_vectors.shape} and "
            f"{weights.shape}"
        )
    if (
        indptr.ndim != 1
        or indptr.size < 1
        or indices.ndim != 1
        or indptr.dtype.kind not in "iu"
        or (indices.size and indices.dtype.kind not in "iu")
    ):
        raise ValueError(
            f"{name}: indptr and indices must be 1-d integer arrays (indptr with at least one entry), "
            f"got {indptr.dtype} {indptr.shape} and {indices.dtype} {indices.shape}"
        )
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"{name}: indptr must start at 0, never decrease and end at len(indices) = {indices.size}; got start "
            f"{indptr[0]}, end {indptr[-1]}"
        )
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        vocab_size = region_vectors.shape[0]
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"{name}: token id {lo if lo < 0 else hi} is outside the model's vocabulary [0, {vocab_size}) "
                f"(vocab_size {vocab_size}); were these tokens made with another universe?"
            )


def pooled_vectors(
    input_vectors: np.ndarray,
    output_vectors: np.ndarray | None,
    pool: str | None,
    context: np.ndarray | None = None,
    context_alone: bool = False,
) -> np.ndarray:
    """The per-token vectors a cell pools: the input vectors (``pool`` None), or, for ``pool ==
    "input+output"`` (:data:`fastembed.kernels.projection.POOL_BOTH`), input and output vectors side by side;
    plus, when given, each token's cell context (:func:`region_context`), or that context alone
    (``context_alone``, :data:`fastembed.kernels.projection.CONTEXT_ALONE`).

    Parameters
    ----------
    input_vectors, output_vectors : np.ndarray of float32, shape (vocab_size, embedding_dim)
        The model's two matrices; ``output_vectors`` is only read for ``"input+output"``.
    pool : str or None
    context : np.ndarray of float32, shape (vocab_size, width), optional
        Added to the pooled matrix; ``width`` is that matrix's (``embedding_dim``, or twice it with
        ``"input+output"``).
    context_alone : bool
        Pool ``context`` instead of the vectors plus it (ignored without a context).

    Returns
    -------
    np.ndarray of float32, shape (vocab_size, embedding_dim) or (vocab_size, 2 * embedding_dim), C-contiguous
        A new array when ``context`` is given or the matrices are joined; else ``input_vectors`` itself.
    """
    if pool is None:
        vectors = input_vectors
    elif pool != POOL_BOTH:
        raise ValueError(f"pool_vectors must be 'input+output' or None, got {pool!r}")
    elif output_vectors is None or output_vectors.shape != input_vectors.shape:
        raise ValueError(
            "pool_vectors 'input+output' needs the output vectors, of the input vectors' shape "
            f"{input_vectors.shape}; got {None if output_vectors is None else output_vectors.shape}"
        )
    else:
        vectors = np.ascontiguousarray(np.hstack([input_vectors, output_vectors]), dtype=np.float32)
    if context is None:
        return vectors
    if context.shape != vectors.shape:
        raise ValueError(f"the region context has shape {context.shape}; expected {vectors.shape}")
    if context_alone:
        return np.array(context, dtype=np.float32, order="C")
    return np.ascontiguousarray(vectors + context, dtype=np.float32)


@numba.njit(**SERIAL_FAST)
def _scatter_cells(indptr, indices, cells, empty, weights, out, held):
    # Serial: cells write to shared token rows. It runs once per training, over the training cells of a small
    # data set (CONTEXT_MAX_CELLS), in the time of one pass over their tokens.
    dim = cells.shape[1]
    for c in range(indptr.size - 1):
        if empty[c]:
            continue
        for p in range(indptr[c], indptr[c + 1]):
            t = indices[p]
            if weights[t] > 0.0:
                held[t] += 1
                for j in range(dim):
                    out[t, j] += cells[c, j]


def region_context(indptr, indices, cells, empty, weights) -> np.ndarray:
    """Each token's cell context: the mean of the pooled vectors of the cells that hold it.

    A token's own vector is learned from the tokens it shares cells with; its context is where those cells
    themselves sit, one more step of averaging over the training cells. On small training sets (a few hundred
    cells, where each region is seen in a handful of cells) the region vectors are noisy and pooling each
    token's vector plus its context gives better cells (:data:`fastembed.kernels.projection.CONTEXT_CELLS`),
    and where the regions are rare as well, the context alone (:data:`fastembed.kernels.projection.CONTEXT_ALONE`).

    Parameters
    ----------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (nnz,)
        The training cells' tokens (CSR).
    cells : np.ndarray of float32, shape (n_cells, width)
        The cells' pooled vectors (:func:`weighted_mean_pool` with ``weights``).
    empty : np.ndarray of bool, shape (n_cells,)
        Cells with no weighted token: they hold no token and add nothing.
    weights : np.ndarray of float32, shape (vocab_size,)
        The pooling weights: a token with weight 0 is not pooled and gets a zero context.

    Returns
    -------
    np.ndarray of float32, shape (vocab_size, width)
        Row ``t``: the mean of ``cells`` over the non-empty cells holding token ``t`` (0 when there are none).
    """
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int32)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    cells = np.ascontiguousarray(cells, dtype=np.float32)
    if indptr.size != cells.shape[0] + 1 or empty.shape != (cells.shape[0],):
        raise ValueError(
            f"{indptr.size - 1} cells of tokens, {cells.shape[0]} pooled cells and {empty.shape[0]} empty flags"
        )
    # float32 sums (a vocabulary-sized block; a token's sum runs over at most CONTEXT_MAX_CELLS cells)
    sums = np.zeros((weights.size, cells.shape[1]), dtype=np.float32)
    held = np.zeros(weights.size, dtype=np.int64)
    _scatter_cells(indptr, indices, cells, np.ascontiguousarray(empty, dtype=np.bool_), weights, sums, held)
    sums /= np.maximum(held, 1).astype(np.float32)[:, None]
    return sums
