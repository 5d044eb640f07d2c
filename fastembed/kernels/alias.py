"""Vose alias table for the negative-sampling distribution.

Word2vec draws negatives from the unigram distribution raised to the power 0.75. Gensim does it with a binary
search in a cumulative table (about log2(V) dependent cache misses per draw); the original C code with a 1e8-entry
lookup table (400 MB for any vocabulary). An alias table (Walker 1977, Vose 1991) needs one random 64-bit draw and
two or three loads per sample, O(V) memory and O(V) construction.

Layout: the table has one entry per token that can be drawn (positive weight only). Entry ``i`` keeps token
``primary[i]`` with probability ``threshold[i] / 2**32`` and otherwise gives ``alias[i]``. Building it over
the drawable tokens only means a token with zero count (or below ``min_count``) cannot be drawn, even through
rounding. The 64-bit draw is split in two: the high 32 bits pick the entry, the low 32 bits are compared with
the integer threshold (no float conversion in the hot loop).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from fastembed.kernels._rng import block_state, next_u64
from fastembed.settings import INLINE, SERIAL

__all__ = ["AliasTable", "build_alias_table", "alias_draw", "alias_sample", "alias_probabilities"]

_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_FULL = 1 << 32


class AliasTable(NamedTuple):
    """An alias table; pass its three arrays to :func:`alias_draw`.

    ``threshold`` uint32[m], ``primary`` int32[m], ``alias`` int32[m], where m is the number of tokens with
    positive weight.
    """

    threshold: np.ndarray
    primary: np.ndarray
    alias: np.ndarray


def build_alias_table(
    counts: np.ndarray, power: float = 0.75, *, mask: np.ndarray | None = None
) -> AliasTable:
    """Build the alias table of the distribution ``counts**power`` (normalised).

    Parameters
    ----------
    counts : int64[V]
        Non-negative counts per token (for cells: the number of cells holding the token).
    power : float
        Exponent applied to the counts; 0.75 as in word2vec, 1.0 for the plain unigram, 0.0 for uniform over the
        tokens with a positive count.
    mask : bool[V], optional
        Tokens allowed to be drawn (e.g. ``counts >= min_count``). Tokens outside it, and tokens with count 0,
        are never drawn.

    Returns
    -------
    AliasTable
        Raises ``ValueError`` if no token can be drawn, a count is negative, or ``power`` is not finite.
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"counts must be a 1-d integer array, got {counts.dtype} with shape {counts.shape}")
    if counts.size and counts.min() < 0:
        raise ValueError("counts must be non-negative")
    if not np.isfinite(power):
        raise ValueError(f"power must be finite, got {power}")
    drawable = counts > 0
    if mask is not None:
        drawable &= np.asarray(mask, dtype=bool)
    tokens = np.flatnonzero(drawable)
    if tokens.size == 0:
        raise ValueError("no token has a positive count: nothing to draw negatives from")
    if tokens.size >= _FULL:
        raise ValueError("alias table supports fewer than 2**32 drawable tokens")
    weights = counts[tokens].astype(np.float64) ** power
    scaled = weights * (tokens.size / weights.sum())
    threshold, alias_slot = _vose(scaled)
    return AliasTable(threshold, tokens.astype(np.int32), tokens[alias_slot].astype(np.int32))


@njit(**SERIAL)
def _vose(scaled):
    """Vose's stable construction on probabilities scaled to mean 1 (float64[m]).

    Returns (threshold uint32[m], alias slot int64[m]). Works on two stacks in preallocated arrays.
    """
    m = scaled.size
    prob = scaled.copy()
    small = np.empty(m, dtype=np.int64)
    large = np.empty(m, dtype=np.int64)
    n_small = 0
    n_large = 0
    for i in range(m):
        if prob[i] < 1.0:
            small[n_small] = i
            n_small += 1
        else:
            large[n_large] = i
            n_large += 1
    accept = np.ones(m, dtype=np.float64)
    alias_slot = np.arange(m)
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = small[n_small]
        g = large[n_large - 1]
        accept[s] = prob[s]
        alias_slot[s] = g
        # The large entry gives away the mass that fills the small one's column.
        prob[g] = (prob[g] + prob[s]) - 1.0
        if prob[g] < 1.0:
            n_large -= 1
            small[n_small] = g
            n_small += 1
    # Whatever is left over holds probability 1 up to rounding: it keeps itself (accept 1, alias = self).
    threshold = np.empty(m, dtype=np.uint32)
    for i in range(m):
        t = accept[i] * 4294967296.0
        if alias_slot[i] == i or t >= 4294967295.0:
            # Self-alias makes the rare low word 0xFFFFFFFF harmless for full columns.
            threshold[i] = np.uint32(4294967295)
            alias_slot[i] = i
        else:
            threshold[i] = np.uint32(t + 0.5) if t > 0.0 else np.uint32(0)
    return threshold, alias_slot


@njit(**INLINE)
def alias_draw(threshold, primary, alias, state):
    """Draw one token id from an alias table.

    Parameters: the three arrays of an :class:`AliasTable` and an RNG state (uint64[1] from
    :func:`fastembed._rng.block_state`, advanced in place). Returns the token id as int64.
    """
    r = next_u64(state)
    i = np.int64(((r >> _S32) * np.uint64(threshold.size)) >> _S32)
    # A select rather than two returns: with one exit the compiler can drop the reference counting of the
    # three arrays once this is inlined into a training loop (with two it kept it, 4 atomic ops per draw).
    p = np.int64(primary[i])
    a = np.int64(alias[i])
    return p if (r & _LOW32) < np.uint64(threshold[i]) else a


@njit(**SERIAL)
def _sample(threshold, primary, alias, size, seed):
    state = block_state(seed, 0, 0)
    out = np.empty(size, dtype=np.int64)
    for i in range(size):
        out[i] = alias_draw(threshold, primary, alias, state)
    return out


def alias_sample(table: AliasTable, size: int, seed: int) -> np.ndarray:
    """``size`` draws from ``table`` (int64[size]), from the RNG stream of ``(seed, 0, 0)``. For tests and tools;
    the training kernels call :func:`alias_draw` inline."""
    return _sample(table.threshold, table.primary, table.alias, int(size), np.uint64(seed))


def alias_probabilities(table: AliasTable, vocab_size: int) -> np.ndarray:
    """The exact distribution a table encodes: float64[vocab_size], summing to 1.

    Useful to check a table against its target without sampling.
    """
    m = table.threshold.size
    keep = table.threshold.astype(np.float64) / _FULL
    full = table.threshold == np.uint32(_FULL - 1)
    keep[full & (table.alias == table.primary)] = 1.0
    p = np.zeros(vocab_size, dtype=np.float64)
    np.add.at(p, table.primary, keep / m)
    np.add.at(p, table.alias, (1.0 - keep) / m)
    return p
