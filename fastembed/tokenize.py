"""Numba kernels for tokenization: peaks -> universe regions by binary search, then cells -> token sets.

Two stages, so no work is repeated per cell:

1. :func:`map_peaks` maps every peak (a column of the cells x peaks matrix) to the universe regions it
   overlaps, as a CSR ``peak -> tokens`` table. Queries run in parallel; each does two binary searches in
   the per-chromosome sorted universe (see :class:`fastembed.universe.SortedRegions`).
2. :func:`cells_to_tokens` turns each row of the cells x peaks CSR matrix into the sorted, unique token
   ids of its peaks, in parallel over cells.

Overlap rule (gtars): half-open intervals overlap when ``min(q.end, u.end) - max(q.start, u.start) >=
min_overlap``. That holds exactly when ``u.start <= q.end - m``, ``u.end >= q.start + m``, and both
intervals are at least ``m`` long.
"""

from __future__ import annotations

import numba
import numpy as np

from ._config import PARALLEL, SERIAL


@numba.njit(**SERIAL)
def _first_above(a, lo, hi, x):
    """First index i in [lo, hi) with a[i] > x (hi if none); ``a[lo:hi]`` must be non-decreasing."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] > x:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(**SERIAL)
def _first_at_least(a, lo, hi, x):
    """First index i in [lo, hi) with a[i] >= x (hi if none); ``a[lo:hi]`` must be non-decreasing."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] >= x:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(**SERIAL)
def _candidate_range(qs, qe, lo, hi, u_starts, u_max_end, m):
    """Slice [left, right) of sorted regions that can overlap [qs, qe) by >= m bp."""
    right = _first_above(u_starts, lo, hi, qe - m)
    left = _first_at_least(u_max_end, lo, right, qs + m)
    return left, right


@numba.njit(**PARALLEL)
def _count_hits(q_chrom, q_start, q_end, chrom_lo, chrom_hi, u_starts, u_ends, u_max_end, m):
    n = q_start.size
    counts = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        c = q_chrom[i]
        qs = q_start[i]
        qe = q_end[i]
        if c < 0 or qe - qs < m:
            continue
        left, right = _candidate_range(qs, qe, chrom_lo[c], chrom_hi[c], u_starts, u_max_end, m)
        k = 0
        for j in range(left, right):
            if u_ends[j] >= qs + m and u_ends[j] - u_starts[j] >= m:
                k += 1
        counts[i] = k
    return counts


@numba.njit(**PARALLEL)
def _fill_hits(
    q_chrom, q_start, q_end, chrom_lo, chrom_hi, u_starts, u_ends, u_max_end, u_token, m, offsets, out
):
    n = q_start.size
    for i in numba.prange(n):
        if offsets[i + 1] == offsets[i]:
            continue
        c = q_chrom[i]
        qs = q_start[i]
        qe = q_end[i]
        left, right = _candidate_range(qs, qe, chrom_lo[c], chrom_hi[c], u_starts, u_max_end, m)
        k = offsets[i]
        for j in range(left, right):
            if u_ends[j] >= qs + m and u_ends[j] - u_starts[j] >= m:
                out[k] = u_token[j]
                k += 1
        out[offsets[i] : k].sort()


def map_peaks(q_chrom, q_start, q_end, sorted_regions, min_overlap=1):
    """Map query intervals to the universe regions they overlap.

    Parameters
    ----------
    q_chrom : np.ndarray of int32, shape (n_peaks,)
        Chromosome code of each peak in the universe's ``chrom_names``; -1 if the universe lacks it.
    q_start, q_end : np.ndarray of int64, shape (n_peaks,)
        Half-open peak coordinates.
    sorted_regions : fastembed.universe.SortedRegions
        The universe's sorted view.
    min_overlap : int
        Minimum overlap in bp (>= 1).

    Returns
    -------
    offsets : np.ndarray of int64, shape (n_peaks + 1,)
    tokens : np.ndarray of int32, shape (offsets[-1],)
        Peak ``i`` maps to ``tokens[offsets[i]:offsets[i+1]]``, sorted ascending.
    """
    m = np.int64(min_overlap)
    s = sorted_regions
    args = (
        np.ascontiguousarray(q_chrom, dtype=np.int32),
        np.ascontiguousarray(q_start, dtype=np.int64),
        np.ascontiguousarray(q_end, dtype=np.int64),
        s.chrom_lo,
        s.chrom_hi,
        s.starts,
        s.ends,
        s.max_end,
    )
    counts = _count_hits(*args, m)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    tokens = np.empty(offsets[-1], dtype=np.int32)
    _fill_hits(*args, s.token, m, offsets, tokens)
    return offsets, tokens


@numba.njit(**PARALLEL)
def _cell_upper_bounds(x_indptr, x_indices, x_data, peak_offsets):
    n_cells = x_indptr.size - 1
    upper = np.zeros(n_cells, dtype=np.int64)
    for c in numba.prange(n_cells):
        k = 0
        for p in range(x_indptr[c], x_indptr[c + 1]):
            if x_data[p] != 0:
                col = x_indices[p]
                k += peak_offsets[col + 1] - peak_offsets[col]
        upper[c] = k
    return upper


@numba.njit(**PARALLEL)
def _cell_collect(x_indptr, x_indices, x_data, peak_offsets, peak_tokens, buf_offsets, buf):
    """Gather each cell's tokens into its slice of ``buf``, sort and dedupe in place; return unique counts."""
    n_cells = x_indptr.size - 1
    n_unique = np.zeros(n_cells, dtype=np.int64)
    for c in numba.prange(n_cells):
        lo = buf_offsets[c]
        k = lo
        for p in range(x_indptr[c], x_indptr[c + 1]):
            if x_data[p] != 0:
                col = x_indices[p]
                for t in range(peak_offsets[col], peak_offsets[col + 1]):
                    buf[k] = peak_tokens[t]
                    k += 1
        if k == lo:
            continue
        # Peaks sorted by position over a position-ordered universe yield sorted tokens already:
        # a linear check skips the sort in that common case.
        ordered = True
        for j in range(lo + 1, k):
            if buf[j] <= buf[j - 1]:
                ordered = False
                break
        if not ordered:
            buf[lo:k].sort()
            w = lo + 1
            for j in range(lo + 1, k):
                if buf[j] != buf[w - 1]:
                    buf[w] = buf[j]
                    w += 1
            k = w
        n_unique[c] = k - lo
    return n_unique


@numba.njit(**PARALLEL)
def _compact(buf, buf_offsets, indptr, out):
    n_cells = indptr.size - 1
    for c in numba.prange(n_cells):
        lo = buf_offsets[c]
        n = indptr[c + 1] - indptr[c]
        out[indptr[c] : indptr[c] + n] = buf[lo : lo + n]


def cells_to_tokens(x_indptr, x_indices, x_data, peak_offsets, peak_tokens):
    """Turn a cells x peaks CSR matrix into each cell's sorted, unique token ids.

    Parameters
    ----------
    x_indptr : np.ndarray of int64, shape (n_cells + 1,)
    x_indices : np.ndarray of int32 or int64, shape (nnz,)
    x_data : np.ndarray, shape (nnz,)
        Stored values; explicit zeros are not regions of the cell.
    peak_offsets, peak_tokens
        The ``peak -> tokens`` table from :func:`map_peaks`.

    Returns
    -------
    indptr : np.ndarray of int64, shape (n_cells + 1,)
    indices : np.ndarray of int32, shape (indptr[-1],)
        Cell ``c`` holds ``indices[indptr[c]:indptr[c+1]]``, strictly increasing.
    """
    x_indptr = np.ascontiguousarray(x_indptr, dtype=np.int64)
    upper = _cell_upper_bounds(x_indptr, x_indices, x_data, peak_offsets)
    buf_offsets = np.zeros(upper.size + 1, dtype=np.int64)
    np.cumsum(upper, out=buf_offsets[1:])
    buf = np.empty(buf_offsets[-1], dtype=np.int32)
    n_unique = _cell_collect(x_indptr, x_indices, x_data, peak_offsets, peak_tokens, buf_offsets, buf)
    if np.array_equal(n_unique, upper):
        return buf_offsets, buf
    indptr = np.zeros(upper.size + 1, dtype=np.int64)
    np.cumsum(n_unique, out=indptr[1:])
    out = np.empty(indptr[-1], dtype=np.int32)
    _compact(buf, buf_offsets, indptr, out)
    return indptr, out
