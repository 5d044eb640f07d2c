"""Naive references (test oracles) shared by several test files: plain Python and numpy, no numba.

Each is written for obviousness, not speed; the kernels under test must agree with them exactly.

- :class:`RefRng` (with :func:`mix64`, :data:`M64`, :data:`GAMMA`): the counter-based SplitMix64 stream of
  :mod:`fastembed._rng`, on Python ints.
- :func:`overlapping`, :func:`overlaps_bruteforce`, :func:`cell_tokens_bruteforce`: half-open interval
  overlap by brute force, as tokenization (peaks) and fragments define it.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------
# SplitMix64 on Python ints
# --------------------------------------------------------------------------------------------------
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    """SplitMix64's output function of a 64-bit state (Python int in, Python int out)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class RefRng:
    """The reference stream of block ``block`` of stream ``stream`` of ``seed``: the same derivation of the
    block state and the same draws as :mod:`fastembed._rng`."""

    def __init__(self, seed: int, stream: int, block: int):
        h = mix64((seed + GAMMA) & M64)
        h = mix64((h + stream * GAMMA + GAMMA) & M64)
        self.s = mix64((h + block * GAMMA + GAMMA) & M64)

    def next(self) -> int:
        """The next 64-bit draw."""
        self.s = (self.s + GAMMA) & M64
        return mix64(self.s)

    def randint(self, n: int) -> int:
        """Uniform in ``0..n-1`` (Lemire's multiply-shift on the high 32 bits)."""
        return ((self.next() >> 32) * n) >> 32

    def uniform(self) -> float:
        """Uniform in [0, 1) with 53 random bits."""
        return (self.next() >> 11) * 2.0**-53

    def alias(self, table) -> int:
        """One draw from an alias table (``threshold``, ``primary``, ``alias`` arrays), with one 64-bit draw:
        the high 32 bits pick the slot, the low 32 bits decide between primary and alias."""
        r = self.next()
        i = ((r >> 32) * table.threshold.size) >> 32
        return int(table.primary[i]) if (r & 0xFFFFFFFF) < int(table.threshold[i]) else int(table.alias[i])


# --------------------------------------------------------------------------------------------------
# Half-open interval overlap, brute force
# --------------------------------------------------------------------------------------------------
def overlapping(chrom, start, end, u_chroms, u_starts, u_ends, min_overlap: int = 1) -> np.ndarray:
    """Indices (int64, ascending) of the regions ``[u_starts, u_ends)`` on ``chrom`` that the interval
    ``[start, end)`` overlaps by at least ``min_overlap`` bp: ``min(end, u_end) - max(start, u_start) >=
    min_overlap``."""
    u_chroms = np.asarray(u_chroms, dtype=object)
    ov = np.minimum(end, np.asarray(u_ends)) - np.maximum(start, np.asarray(u_starts))
    return np.flatnonzero((u_chroms == chrom) & (ov >= min_overlap)).astype(np.int64)


def overlaps_bruteforce(q_chroms, q_starts, q_ends, u_chroms, u_starts, u_ends, min_overlap=1):
    """For each query interval, :func:`overlapping` (a list of int64 arrays, one per query)."""
    return [
        overlapping(c, s, e, u_chroms, u_starts, u_ends, min_overlap)
        for c, s, e in zip(q_chroms, q_starts, q_ends, strict=True)
    ]


def cell_tokens_bruteforce(X, peak_hits):
    """For each row of a CSR matrix, the sorted unique union of the hits of its nonzero columns."""
    cells = []
    for i in range(X.shape[0]):
        row = X.getrow(i)
        cols = row.indices[row.data != 0]
        parts = [peak_hits[j] for j in cols]
        cells.append(np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64))
    return cells
