"""Naive references (test oracles) shared by several test files: plain Python and numpy, no numba.

Each is written for obviousness, not speed; the kernels under test must agree with them exactly.

- :class:`RefRng` (with :func:`mix64`, :data:`M64`, :data:`GAMMA`): the counter-based SplitMix64 stream of
  :mod:`fastembed._rng`, on Python ints.
- :func:`overlapping`, :func:`overlaps_bruteforce`, :func:`cell_tokens_bruteforce`: half-open interval
  overlap by brute force, as tokenization (peaks) and fragments define it.
- :func:`ref_probabilities`: the negative-sampling distribution counts**0.75 an alias table must encode.
- :func:`pool_reference`: pooling as a sparse (cells x vocab) weight matrix times the vectors.
- :func:`vote_reference`: k-NN label transfer, one query cell at a time, every similarity sorted.
- :func:`ref_sgns` (with :func:`ref_sigmoid`): the SGNS trainer of :mod:`fastembed.sgns` (same algorithm,
  same random stream, same update order), one Python loop per token; agreement is up to float rounding.
- :func:`novelty_bruteforce`: the novelty score of :mod:`fastembed.novelty` (leave-one-out neighbour
  distances of the reference, the query's, and the tail probability among the predicted type), by sorting
  every similarity.

Approximate equality is used only where the kernels' ``fastmath`` reassociates sums.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

import fastembed.sgns as sgns
from fastembed.alias import build_alias_table
from fastembed.sgns import init_vectors

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


# --------------------------------------------------------------------------------------------------
# Negative sampling: the target distribution of an alias table
# --------------------------------------------------------------------------------------------------
def ref_probabilities(counts, power=0.75, mask=None):
    """counts**power over the tokens with a count (and ``mask``), normalised: float64[n]."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, counts, 0.0) ** power * (counts > 0)
    if mask is not None:
        weights = weights * np.asarray(mask)
    return weights / weights.sum()


# --------------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------------
def pool_reference(indptr, indices, vectors, weights):
    """The obvious version: (cells x vocab weight matrix) @ vectors, divided by the row sums."""
    n = indptr.size - 1
    A = sp.csr_matrix((weights[indices].astype(np.float64), indices, indptr), shape=(n, vectors.shape[0]))
    total = np.asarray(A.sum(axis=1)).ravel()
    out = A @ vectors.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total[:, None] > 0, out / total[:, None], 0.0)
    return out, total == 0


def region_context_reference(indptr, indices, cells, empty, weights):
    """Token by token: the mean of ``cells`` over the non-empty cells holding the token, for tokens with a positive
    weight (0 otherwise). float64 (vocab, width)."""
    vocab = weights.size
    holders = [[] for _ in range(vocab)]
    for c in range(len(indptr) - 1):
        if empty[c]:
            continue
        for t in indices[indptr[c] : indptr[c + 1]]:
            holders[t].append(c)
    out = np.zeros((vocab, cells.shape[1]))
    for t in range(vocab):
        if weights[t] > 0 and holders[t]:
            out[t] = np.asarray(cells, dtype=np.float64)[holders[t]].mean(axis=0)
    return out


# --------------------------------------------------------------------------------------------------
# Annotation: the naive k-NN vote (loop over query cells, sort all similarities, weighted vote)
# --------------------------------------------------------------------------------------------------
def vote_reference(ref_emb, ref_labels, query_emb, k, center=True):
    """(labels object[n_query], confidence float64[n_query]): cosine k-NN vote weighted by similarity, ties to the
    label of the nearer neighbour; the reference mean is subtracted first when ``center``."""
    if center:
        mean = ref_emb.astype(np.float64).mean(axis=0)
        ref_emb, query_emb = ref_emb - mean, query_emb - mean
    ref = ref_emb / np.linalg.norm(ref_emb, axis=1, keepdims=True)
    out, conf = [], []
    for q in query_emb:
        sim = ref @ (q / np.linalg.norm(q))
        nearest = np.argsort(-sim, kind="stable")[:k]
        totals = {}
        for rank, j in enumerate(nearest):
            w = max(sim[j], 1e-6)
            s, r = totals.get(ref_labels[j], (0.0, rank))
            totals[ref_labels[j]] = (s + w, min(r, rank))
        best = max(totals.items(), key=lambda kv: (kv[1][0], -kv[1][1]))
        out.append(best[0])
        conf.append(best[1][0] / sum(v[0] for v in totals.values()))
    return np.array(out, dtype=object), np.array(conf)


# --- SGNS ---------------------------------------------------------------------------------------------------
REF_TABLE = np.array(
    [math.exp((i / 1000 * 2 - 1) * 6) / (math.exp((i / 1000 * 2 - 1) * 6) + 1) for i in range(1000)],
    dtype=np.float32,
)


def ref_sigmoid(f):
    if f >= 6.0:
        return np.float32(1.0)
    if f <= -6.0:
        return np.float32(0.0)
    return REF_TABLE[int((np.float32(f) + np.float32(6.0)) * np.float32(1000 / 12))]


def ref_sgns(
    cells,
    vocab_size,
    *,
    dim,
    window,
    negative,
    epochs,
    batch_size,
    lr0,
    lr_min,
    min_count,
    seed,
    add_back=False,
    negative_power=None,
    sample=0.0,
):
    """Skip-gram over cells: each epoch a cell is shuffled, and each token is a centre whose contexts are the next
    2*w tokens (w uniform in 1..window, at most n - 1, wrapping around), with negatives shared per centre (drawn
    from counts^negative_power, by default ``sgns.NEGATIVE_POWER`` as it is when called); the
    centre's output rows are buffered and updated after every pair of contexts, each pair scored against them
    before either updates them (HogBatch in pairs), and written back over the shared rows (a row drawn twice keeps
    its later slot) or, with ``add_back``, their changes added to them; blocks run one after the other in each
    epoch's order from ``sgns.block_order``. With ``sample`` (a threshold, or "auto"), each occurrence of a token
    is first kept with word2vec's probability, written out here: ``sqrt(s / f) + s / f`` for a token making up
    the share ``f`` of the trained occurrences, ``s = sample`` or, for "auto", ``sgns.THIN_OCCURRENCES`` over
    their number; a token with probability 1 or more draws nothing.
    Plain Python and numpy."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for cell in cells:
        for t in cell:
            counts[t] += 1
    trained = counts >= min_count
    cells = [[t for t in cell if trained[t]] for cell in cells]
    total_trained = float(counts[trained].sum())
    if sample == "auto":
        sample = sgns.THIN_OCCURRENCES / total_trained
    keep = [1.0] * vocab_size
    for t in range(vocab_size):
        if sample > 0 and trained[t]:
            f = counts[t] / total_trained
            # the kernel compares its draw with the float32 probability
            keep[t] = float(np.float32(min(1.0, math.sqrt(sample / f) + sample / f)))
    power = sgns.NEGATIVE_POWER if negative_power is None else negative_power
    table = build_alias_table(counts, power, mask=trained)
    w_in, w_out = init_vectors(vocab_size, dim, seed)
    w_in[~trained] = 0.0
    epoch_words = sum(len(c) for c in cells)
    total = float(epoch_words * epochs)
    n_blocks = -(-len(cells) // batch_size)
    done = 0
    block_tokens = np.array(
        [sum(len(c) for c in cells[b * batch_size : (b + 1) * batch_size]) for b in range(n_blocks)],
        dtype=np.int64,
    )
    for epoch in range(epochs):
        # Blocks in the epoch's shuffled order (sgns.block_order: a numpy permutation drawn from seed and epoch);
        # the learning rate counts the tokens done in that order.
        order, _ = sgns.block_order(seed, epoch, block_tokens)
        for b in order:
            rng = RefRng(seed, epoch, int(b))
            for cell in cells[b * batch_size : (b + 1) * batch_size]:
                n = len(cell)
                lr = np.float32(max(lr_min, lr0 - (lr0 - lr_min) * done / total))
                done += n
                if n < 2:
                    continue
                cell = [t for t in cell if keep[t] >= 1.0 or rng.uniform() < keep[t]]
                n = len(cell)
                if n < 2:
                    continue
                for i in range(n - 1, 0, -1):
                    j = rng.randint(i + 1)
                    cell[i], cell[j] = cell[j], cell[i]
                upcoming = [rng.alias(table) for _ in range(negative)]  # negatives are drawn a centre ahead
                for i, centre in enumerate(cell):
                    negatives = upcoming
                    if i + 1 < n:
                        upcoming = [rng.alias(table) for _ in range(negative)]
                    m = min(2 * (window - rng.randint(window)), n - 1)
                    contexts = [cell[(i + d) % n] for d in range(1, m + 1)]  # the next m tokens, circularly
                    ids = [centre] + negatives
                    live = [k == 0 or target != centre for k, target in enumerate(ids)]
                    out = w_out[ids].copy()
                    out0 = out.copy()
                    # Contexts in pairs: both scored against the output rows as they stand, then the input
                    # rows take their gradients (against those rows) and the rows take both updates.
                    for p in range(0, m, 2):
                        pair = contexts[p : p + 2]
                        hs = w_in[pair].copy()
                        gs = np.zeros((len(pair), len(ids)), dtype=np.float32)
                        for q in range(len(pair)):
                            for k in range(len(ids)):
                                if live[k]:
                                    f = np.float32(np.dot(hs[q], out[k]))
                                    gs[q, k] = np.float32((np.float32(k == 0) - ref_sigmoid(f)) * lr)
                        grads = gs @ out
                        out += gs.T @ hs
                        for q, ctx in enumerate(pair):
                            w_in[ctx] = hs[q] + grads[q]
                    for k, target in enumerate(ids):
                        if live[k]:
                            if add_back:
                                w_out[target] += out[k] - out0[k]
                            else:
                                w_out[target] = out[k]
    return w_in, w_out, counts, trained


# --------------------------------------------------------------------------------------------------
# Novelty: leave-one-out neighbour distances and a conformal tail probability, by brute force
# --------------------------------------------------------------------------------------------------
def novelty_bruteforce(ref_emb, ref_codes, query_emb, query_codes, k, center=True):
    """Novelty of each query cell given its predicted label code, in float64 with full sorts.

    Each reference cell's distance is the mean ``1 - cosine`` to its ``k`` most similar other reference cells;
    a query cell's, to its ``k`` most similar reference cells. Its novelty is ``1 - (1 + #{reference cells of
    its label at least as far}) / (1 + #cells of the label)``.
    """
    ref = np.asarray(ref_emb, dtype=np.float64)
    qry = np.asarray(query_emb, dtype=np.float64)
    if center:
        mean = ref.mean(axis=0)
        ref, qry = ref - mean, qry - mean
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    qry = qry / np.linalg.norm(qry, axis=1, keepdims=True)
    loo = []
    for i in range(ref.shape[0]):
        sims = [float(ref[i] @ ref[j]) for j in range(ref.shape[0]) if j != i]
        loo.append(np.mean([1.0 - s for s in sorted(sims, reverse=True)[:k]]))
    loo = np.array(loo)
    out = []
    for q, c in zip(qry, query_codes, strict=True):
        d = np.mean([1.0 - s for s in sorted((ref @ q).tolist(), reverse=True)[:k]])
        null = loo[np.asarray(ref_codes) == c]
        out.append(1.0 - (1.0 + np.sum(null >= d)) / (1.0 + null.size))
    return np.array(out)


def merge_overlapping_bruteforce(intervals):
    """Union of half-open intervals ``(start, end)`` that share at least one base, by merging pairs until none
    is left; book-ended intervals (one's end is the other's start) stay apart. Returns sorted ``(start, end)``."""
    groups = [(int(s), int(e)) for s, e in intervals]
    changed = True
    while changed:
        changed = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                (a, b), (c, d) = groups[i], groups[j]
                if min(b, d) - max(a, c) >= 1 or (a, b) == (c, d):
                    groups[i] = (min(a, c), max(b, d))
                    del groups[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(groups)


def fragments_qc_bruteforce(frags, universe, *, mode="fragment", min_overlap=1):
    """Per-barcode counts and QC of fragments, one fragment at a time.

    ``frags``: (chrom, start, end, barcode) tuples; ``universe``: (chrom, start, end) tuples. Returns
    ``{barcode: dict}`` with ``counts`` (region index -> count), ``n_fragments``, ``n_in`` (fragments hitting a
    region), ``nfr`` (< 147 bp), ``mono`` (147-294 bp) and ``mito`` (on chrM/chrMT/M/MT)."""
    u_chr = np.array([u[0] for u in universe], dtype=object)
    u_s = np.array([u[1] for u in universe], dtype=np.int64)
    u_e = np.array([u[2] for u in universe], dtype=np.int64)
    out = {}
    for c, s, e, b in frags:
        r = out.setdefault(b, {"counts": {}, "n_fragments": 0, "n_in": 0, "nfr": 0, "mono": 0, "mito": 0})
        if mode == "fragment":
            sites = [(s, e)]
            m = min_overlap
        else:
            sites = [(s, s + 1), (e - 1, e)]
            m = 1
        any_hit = False
        for qs, qe in sites:
            for j in range(len(universe)):
                if u_chr[j] == c and min(qe, u_e[j]) - max(qs, u_s[j]) >= m and u_e[j] - u_s[j] >= m:
                    r["counts"][j] = r["counts"].get(j, 0) + 1
                    any_hit = True
        r["n_fragments"] += 1
        r["n_in"] += any_hit
        r["nfr"] += (e - s) < 147
        r["mono"] += 147 <= (e - s) <= 294
        r["mito"] += c in ("chrM", "chrMT", "M", "MT")
    return out


# --------------------------------------------------------------------------------------------------
# The weighted cell projection (fastembed.projection)
# --------------------------------------------------------------------------------------------------
def ref_weighted_projection(train, cells, k, power):
    """``cells`` projected onto the top ``k`` principal axes of ``train`` by numpy's SVD, in ``train``'s original
    coordinates: each axis' score times ``(s_1 / s_j) ** (1 - power)`` (``s_j``: the axis' singular value), so the
    spreads go as ``s_j ** power``. float64 (n, dim)."""
    train = np.asarray(train, dtype=np.float64)
    centre = train.mean(axis=0)
    _, s, vt = np.linalg.svd(train - centre, full_matrices=False)
    out = np.zeros((len(cells), train.shape[1]))
    for j in range(k):
        score = (np.asarray(cells, dtype=np.float64) - centre) @ vt[j]
        out += np.outer(score * (s[0] / s[j]) ** (1.0 - power), vt[j])
    return out


def ref_auto_components(indptr, indices, trained, *, threshold=600, low=20, high=30):
    """``n_components="auto"`` spelled out cell by cell: the mean number of trained tokens over the cells that hold
    at least one, ``high`` axes from ``threshold`` tokens per cell on, else ``low``."""
    counts = []
    for c in range(len(indptr) - 1):
        n = sum(1 for t in indices[indptr[c] : indptr[c + 1]] if trained[t])
        if n > 0:
            counts.append(n)
    if counts and sum(counts) / len(counts) >= threshold:
        return high
    return low
