"""Skip-gram with negative sampling (SGNS) over cells, as numba kernels.

A cell is a *set* of universe regions (tokens). Training learns an input vector and an output vector per token
so that tokens open in the same cells score high against each other. :func:`train_sgns` is the entry point;
``ScEmbed.train`` calls it with the dataset's CSR arrays.

Algorithm (per epoch, per cell of n tokens)
-------------------------------------------
1. The cell's tokens are put in a fresh random order (Fisher-Yates): a cell has no token order.
2. Each token is a *centre* in turn. Its *contexts* are the next ``m = min(2w, n - 1)`` tokens of the shuffled
   cell, wrapping around at the end, with ``w`` uniform in ``1..window_size`` (word2vec's reduced window, so the
   same ``window_size + 1`` contexts per centre on average as a two-sided word2vec window).
3. ``negative_samples`` negatives are drawn once per centre from the unigram^0.75 alias table and shared by all
   its contexts (HogBatch, Ji et al. 2016; BlazingText, Gupta & Khare 2017). Each context's input row is trained
   against the centre's output row (label 1) and the negatives' output rows (label 0), as in word2vec's
   skip-gram, where the context word is the input and the centre word the target.
4. The centre's and the negatives' output rows are copied into a small thread-local buffer, updated there in
   word2vec's sequential order, and their *deltas* are added back once per centre; input rows are updated after
   each context, as in word2vec. The rows the next centre will touch are prefetched one centre ahead.
5. The learning rate decays linearly from ``learning_rate`` to ``min_learning_rate`` with the number of tokens
   processed before the current cell over all epochs; that count follows from the block's position, so it does
   not depend on thread scheduling.
6. The sigmoid is read from a 1,000-entry table over ``[-6, 6]`` and saturates outside, as in word2vec and gensim.

Parallelism: cells are cut into blocks of ``batch_size`` consecutive cells; blocks run in a ``prange`` and write
the shared matrices without locks (hogwild, Recht et al. 2011). Every block draws from its own RNG stream derived
from ``(seed, epoch, block)``, so with ``threads=1`` (which runs a serial compilation of the same block kernel) two
runs with the same seed give bit-identical vectors. With more threads the interleaving of updates is up to the OS,
so results are statistically equivalent but not bit-reproducible.

Why (measured on the 2-core AMD EPYC of the project; granja2019 = 14,125 cells, 10,000 regions, 2.3M tokens per
epoch; synthetic = 5,000 cells x 100,000 regions, 17.4M tokens; dim 100, window 5, negative 5; words/s on one
thread unless noted; run-to-run noise on this shared machine is about +-10%; ``bench/RESULTS.md`` has the final
comparison with gensim)
------------------------------------------------------------------------------------------------------------------
* Negatives per (context, centre) pair, as word2vec: 0.42M words/s, and 0.46M on 2 threads (the frequent
  negatives' rows bounce between cores). Shared per centre: 0.56M (1.04M on 2 threads). Plus the thread-local
  output buffer: 0.72M. Plus reading each row index into a scalar before the inner loops (numba re-read ``ids[k]``
  on every element, which also blocked vectorisation): 1.06-1.1M. Prefetching the next centre's rows (final
  kernel, with vs without): 1.16M vs 0.97M on granja, 1.02M vs 0.66M on the synthetic corpus, whose 2 x 40 MB of
  vectors do not fit in cache.
* Pairing a centre with the next 2w tokens rather than w on each side: in a two-sided window every pair shows up
  twice per epoch (a sees b, b sees a), one-sided it shows up once, so an epoch covers about twice as many distinct
  pairs at the same cost. Granja, 30 epochs, 2 threads, mean of 5 seeds (Leiden ARI at 16 clusters / 10-NN label
  transfer D6T1 -> D5T1): two-sided 0.372 / 0.675; one-sided 0.389 / 0.679; drawing each centre's contexts
  uniformly from its cell 0.386 / 0.677 but 8-20% slower (random input rows instead of a sliding window); gensim
  sg on cells reshuffled every epoch (3 seeds) 0.383 / 0.672.
* Scoring the centre once against its contexts and the shared negatives (centre as input, negative gradient
  scaled by the number of contexts) needs 3x fewer dot products (1.4-1.6M words/s) but lost quality (10-NN
  0.637 vs 0.677 at 30 epochs): rejected.
* Sigmoid table vs ``1 / (1 + exp(-x))``: 0.76M vs 0.54M words/s (``expf`` is a libm call in the middle of the
  vectorised loops).
* ``fastmath`` (reassociation, which the vectorised dot product needs): 1.09M vs 0.50M words/s.
* Scoring a context against all its output rows before updating any (the scores do not depend on each other's
  updates, so the result is the same): 0.80-0.81M vs 0.77M words/s on one thread (2026-11-25; this VM ran the
  whole kernel about a third slower than the one of the figures above). Padding rows from 100 to 128 floats for
  whole AVX-512 vectors: +4% words/s for 28% more memory: rejected.
* Dynamic scheduling of blocks (``numba.parallel_chunksize(1)``) and batch sizes of 64 to 1,024 cells changed
  2-thread speed by less than the noise; the default static split is kept.
"""

from __future__ import annotations

import sys
import time
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from fastembed._config import PARALLEL_FAST, SERIAL, SERIAL_FAST
from fastembed._prefetch import prefetch_row
from fastembed._rng import block_state, new_seed, randint
from fastembed._threads import numba_threads, resolve_threads
from fastembed.alias import alias_draw, build_alias_table

__all__ = ["SGNSResult", "train_sgns", "init_vectors", "MAX_EXP", "SIGMOID_TABLE_SIZE"]

MAX_EXP = 6.0
"""The sigmoid saturates to 0/1 for scores beyond +-MAX_EXP (word2vec's clipping)."""
SIGMOID_TABLE_SIZE = 1000
"""Entries of the sigmoid table over ``(-MAX_EXP, MAX_EXP)``, as in word2vec."""

# Entry i holds sigmoid at the left edge of bin i, as word2vec's expTable. One extra entry keeps the index in
# range when a score is clamped to exactly +MAX_EXP (that case is then overridden to 1 anyway).
_SIGMOID = (
    1.0 / (1.0 + np.exp(-(np.arange(SIGMOID_TABLE_SIZE + 1) / SIGMOID_TABLE_SIZE * 2.0 - 1.0) * MAX_EXP))
).astype(np.float32)
_SIGMOID_SCALE = np.float32(SIGMOID_TABLE_SIZE / (2.0 * MAX_EXP))
_HI = np.float32(MAX_EXP)
_LO = np.float32(-MAX_EXP)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


class SGNSResult(NamedTuple):
    """What :func:`train_sgns` returns.

    Attributes
    ----------
    w_in : float32[vocab_size, embedding_dim]
        Input ("region") vectors. Rows of tokens that were not trained are zero.
    w_out : float32[vocab_size, embedding_dim]
        Output (context) vectors; zero for tokens never used as a target.
    counts : int64[vocab_size]
        Number of cells holding each token (its occurrences, since a cell's tokens are unique).
    trained : bool[vocab_size]
        ``counts >= min_count``: the tokens that were trained and may be used when encoding.
    words_processed : int
        Centre tokens processed over all epochs (trained token occurrences x epochs).
    seconds : float
        Wall time of the training epochs (excluding validation, initialisation and JIT compilation).
    """

    w_in: np.ndarray
    w_out: np.ndarray
    counts: np.ndarray
    trained: np.ndarray
    words_processed: int
    seconds: float


@njit(**SERIAL_FAST)
def _sigmoid(f):
    """word2vec's table sigmoid, saturated outside +-MAX_EXP. Written with min/max and selects rather than
    early returns so it compiles without branches (measured a few % faster)."""
    x = min(max(f, _LO), _HI)
    s = _SIGMOID[int((x + _HI) * _SIGMOID_SCALE)]
    s = _ONE if f >= _HI else s
    return _ZERO if f <= _LO else s


@njit(**SERIAL_FAST)
def _train_context(w_in, ctx, out, n_out, skip, lr, h, grad, gs):
    """One context row ``w_in[ctx]`` against the window's output rows ``out[:n_out]`` (row 0 is the centre,
    label 1; the rest are negatives, label 0; rows with ``skip`` set are ignored). Updates ``out`` in place
    and ``w_in[ctx]`` at the end, as word2vec does per (context, centre) pair.

    ``h`` and ``grad`` are float32[dim] and ``gs`` float32[n_out] scratch buffers owned by the calling block.
    """
    dim = h.size
    # A local copy of the input row lets LLVM vectorise without checking whether it overlaps ``out``.
    for d in range(dim):
        h[d] = w_in[ctx, d]
        grad[d] = 0.0
    # All scores first: each depends only on h and its own output row, so the dot products are independent
    # and the CPU overlaps them; the results are the same as scoring and updating one row at a time.
    for k in range(n_out):
        f = np.float32(0.0)
        for d in range(dim):
            f += h[d] * out[k, d]
        gs[k] = _ZERO if skip[k] else ((_ONE if k == 0 else _ZERO) - _sigmoid(f)) * lr
    for k in range(n_out):
        g = gs[k]
        if skip[k]:
            continue
        for d in range(dim):
            o = out[k, d]
            grad[d] += g * o
            out[k, d] = o + g * h[d]
    for d in range(dim):
        w_in[ctx, d] = h[d] + grad[d]


@njit(**SERIAL_FAST)
def _train_block(
    block,
    indptr,
    indices,
    w_in,
    w_out,
    threshold,
    primary,
    alias,
    seed,
    epoch,
    batch_size,
    window,
    negative,
    lr0,
    lr_min,
    words_done,
    words_total,
    max_len,
):
    """Train on cells ``[block * batch_size, (block + 1) * batch_size)`` for one epoch.

    ``words_done`` is the number of tokens processed, over all epochs, before this block (it drives the learning
    rate); ``words_total`` the number over the whole run; ``max_len`` the longest cell. Draws from the RNG stream
    of ``(seed, epoch, block)``, in this order per cell: the shuffle, the negatives of centre 0, then for each
    centre ``i`` the negatives of centre ``i + 1`` (if any) and the window of ``i``.
    """
    n_cells = indptr.size - 1
    dim = w_in.shape[1]
    n_out = negative + 1
    state = block_state(seed, epoch, block)
    cell = np.empty(max_len, dtype=np.int32)
    ids = np.empty(n_out, dtype=np.int64)
    upcoming = np.empty(n_out, dtype=np.int64)
    skip = np.zeros(n_out, dtype=np.bool_)
    out = np.empty((n_out, dim), dtype=np.float32)
    out0 = np.empty((n_out, dim), dtype=np.float32)
    h = np.empty(dim, dtype=np.float32)
    grad = np.empty(dim, dtype=np.float32)
    gs = np.empty(n_out, dtype=np.float32)
    lr_span = lr0 - lr_min
    done = words_done
    for c in range(block * batch_size, min((block + 1) * batch_size, n_cells)):
        start = indptr[c]
        n = indptr[c + 1] - start
        lr = np.float32(max(lr_min, lr0 - lr_span * done / words_total))
        done += n
        if n < 2:
            continue
        for i in range(n):
            cell[i] = indices[start + i]
        for i in range(n - 1, 0, -1):
            j = randint(state, i + 1)
            tmp = cell[i]
            cell[i] = cell[j]
            cell[j] = tmp
        # Negatives are drawn one centre ahead so that their output rows can be prefetched.
        for k in range(1, n_out):
            upcoming[k] = alias_draw(threshold, primary, alias, state)
        for i in range(n):
            centre = np.int64(cell[i])
            ids[0] = centre
            for k in range(1, n_out):
                t = upcoming[k]
                ids[k] = t
                # word2vec skips a negative that hits the target itself.
                skip[k] = t == centre
            if i + 1 < n:
                for k in range(1, n_out):
                    t = alias_draw(threshold, primary, alias, state)
                    upcoming[k] = t
                    prefetch_row(w_out, t)
                prefetch_row(w_out, cell[i + 1])
                # The farthest context the next centre can reach is the only input row it may need afresh.
                prefetch_row(w_in, cell[(i + 2 * window + 1) % n])
            m = min(2 * (window - randint(state, window)), n - 1)
            # Row indices go through a scalar first: numba re-reads ``ids[k]`` on every element otherwise
            # (it cannot rule out that the float stores change it), which costs a third of the run time.
            for k in range(n_out):
                r = ids[k]
                for d in range(dim):
                    v = w_out[r, d]
                    out[k, d] = v
                    out0[k, d] = v
            # The contexts are the next m tokens of the shuffled cell, wrapping around at its end.
            j = i
            for _ in range(m):
                j += 1
                if j == n:
                    j = 0
                _train_context(w_in, np.int64(cell[j]), out, n_out, skip, lr, h, grad, gs)
            # Add deltas rather than copy back, so updates other threads made meanwhile are kept.
            for k in range(n_out):
                r = ids[k]
                for d in range(dim):
                    w_out[r, d] += out[k, d] - out0[k, d]
    return done - words_done


# Two drivers of the same block kernel: the serial one is deterministic (threads=1), the parallel one hogwild.
# They are separate functions rather than one function compiled twice (umap-learn style) because numba's on-disk
# cache keys entries by bytecode and signature, not by compile flags: with cache=True one variant could load the
# other's machine code.
@njit(**SERIAL_FAST)
def _blocks_serial(
    b0,
    b1,
    indptr,
    indices,
    w_in,
    w_out,
    threshold,
    primary,
    alias,
    seed,
    epoch,
    batch_size,
    window,
    negative,
    lr0,
    lr_min,
    words_total,
    max_len,
):
    epoch_words = indptr[indptr.size - 1]
    for b in range(b0, b1):
        _train_block(
            b,
            indptr,
            indices,
            w_in,
            w_out,
            threshold,
            primary,
            alias,
            seed,
            epoch,
            batch_size,
            window,
            negative,
            lr0,
            lr_min,
            epoch * epoch_words + indptr[b * batch_size],
            words_total,
            max_len,
        )


@njit(**PARALLEL_FAST)
def _blocks_parallel(
    b0,
    b1,
    indptr,
    indices,
    w_in,
    w_out,
    threshold,
    primary,
    alias,
    seed,
    epoch,
    batch_size,
    window,
    negative,
    lr0,
    lr_min,
    words_total,
    max_len,
):
    epoch_words = indptr[indptr.size - 1]
    for b in prange(b0, b1):
        _train_block(
            b,
            indptr,
            indices,
            w_in,
            w_out,
            threshold,
            primary,
            alias,
            seed,
            epoch,
            batch_size,
            window,
            negative,
            lr0,
            lr_min,
            epoch * epoch_words + indptr[b * batch_size],
            words_total,
            max_len,
        )


@njit(**SERIAL)
def _count_tokens(indices, vocab_size):
    """Occurrences of each token (int64[vocab_size]). np.bincount would first copy int32 ids to int64, an
    nnz-sized temporary that showed up in peak memory."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for t in indices:
        counts[t] += 1
    return counts


def init_vectors(vocab_size: int, embedding_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """word2vec's initialisation: input rows uniform in ``[-0.5/dim, 0.5/dim)``, output rows zero.

    Parameters: ``seed`` is a uint64 from :func:`fastembed._rng.new_seed`.
    Returns ``(w_in, w_out)``, both float32[vocab_size, embedding_dim], C-contiguous.
    """
    w_in = np.random.default_rng(seed).random((vocab_size, embedding_dim), dtype=np.float32)
    w_in -= np.float32(0.5)
    w_in /= np.float32(embedding_dim)
    return w_in, np.zeros((vocab_size, embedding_dim), dtype=np.float32)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}"[:300])
    return float(value)


def _check_csr(indptr, indices, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    if indptr.ndim != 1 or not np.issubdtype(indptr.dtype, np.integer):
        raise ValueError(
            f"indptr must be a 1-d integer array, got dtype {indptr.dtype}, shape {indptr.shape}"
        )
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"indices must be a 1-d integer array, got dtype {indices.dtype}, shape {indices.shape}"
        )
    if indptr.size < 2 or indices.size == 0:
        raise ValueError(f"empty dataset: {max(indptr.size - 1, 0)} cells and {indices.size} tokens")
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"indptr must start at 0, never decrease and end at len(indices) = {indices.size}; "
            f"got start {indptr[0]}, end {indptr[-1]}"
        )
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"token id {bad} is outside the vocabulary [0, {vocab_size}): the dataset does not match the model's "
            "vocabulary (was it tokenized with another universe?)"
        )
    return indptr.astype(np.int64, copy=False), indices.astype(np.int32, copy=False)


def _drop_untrained(indptr: np.ndarray, indices: np.ndarray, trained: np.ndarray):
    """CSR without the tokens that are not trained (a copy; only made when there are such tokens)."""
    keep = trained[indices]
    kept_before = np.zeros(indices.size + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return kept_before[indptr], indices[keep]


def train_sgns(
    indptr: np.ndarray,
    indices: np.ndarray,
    vocab_size: int,
    *,
    embedding_dim: int = 100,
    window_size: int = 5,
    negative_samples: int = 5,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 0.025,
    min_learning_rate: float = 1e-4,
    min_count: int = 1,
    seed: int | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> SGNSResult:
    """Train skip-gram with negative sampling on cells given as CSR token lists.

    Parameters
    ----------
    indptr : int[n_cells + 1]
        Cell ``c`` holds tokens ``indices[indptr[c]:indptr[c + 1]]``. Converted to int64 (no copy if it is).
    indices : int[nnz]
        Token ids in ``[0, vocab_size)``. A cell is a set: order is ignored (it is reshuffled every epoch) and
        tokens are expected to be unique within a cell. Converted to int32 (no copy if it is). Not modified.
    vocab_size : int
        Number of rows of the returned matrices (universe regions plus special tokens).
    embedding_dim : int, default 100
        Vector length.
    window_size : int, default 5
        Each centre is paired with the next ``2w`` tokens of the freshly shuffled cell (wrapping around), with
        ``w`` uniform in ``1..window_size``: on average ``window_size + 1`` contexts, as many as a two-sided
        word2vec window of this size.
    negative_samples : int, default 5
        Negatives per centre, from the counts^0.75 distribution of trained tokens, shared by its contexts.
    epochs : int, default 100
        Passes over all cells.
    batch_size : int, default 256
        Cells per parallel work unit (block). Each block has its own random stream; blocks run concurrently.
    learning_rate, min_learning_rate : float, default 0.025 and 1e-4
        The learning rate falls linearly from the first to the second over all epochs.
    min_count : int, default 1
        Tokens held by fewer cells are not trained, not used as context or negatives, and keep zero vectors.
    seed : int, optional
        Seed for initialisation and sampling. With ``threads=1`` the same seed gives bit-identical results.
        With more threads, updates race (hogwild), so results differ slightly between runs.
    threads : int, optional
        Numba threads for this call, 1 to NUMBA_NUM_THREADS (default: numba's current setting,
        ``numba.get_num_threads()``); the previous setting is restored afterwards.
    progress : bool, default True
        Show a tqdm bar (epochs, tokens/s, learning rate) on stderr; it stays silent when stderr is not a terminal.

    Returns
    -------
    SGNSResult
        ``w_in``, ``w_out`` (float32[vocab_size, embedding_dim]), ``counts`` (int64[vocab_size]), ``trained``
        (bool[vocab_size]), ``words_processed`` and ``seconds``.

    Raises
    ------
    ValueError
        Empty dataset, token ids outside ``[0, vocab_size)``, no token reaching ``min_count``, no cell holding two
        trained tokens (nothing to learn), or a parameter out
        of range (``epochs < 1``, non-positive sizes, ``min_learning_rate > learning_rate``, ...).
    """
    vocab_size = _check_int("vocab_size", vocab_size, 1)
    if vocab_size >= 2**31:
        raise ValueError(f"vocab_size must be below 2**31, got {vocab_size}")
    embedding_dim = _check_int("embedding_dim", embedding_dim, 1)
    window_size = _check_int("window_size", window_size, 1)
    negative_samples = _check_int("negative_samples", negative_samples, 1)
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    min_count = _check_int("min_count", min_count, 1)
    learning_rate = _check_float("learning_rate", learning_rate)
    min_learning_rate = _check_float("min_learning_rate", min_learning_rate)
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate}")
    if not (np.isfinite(min_learning_rate) and 0 <= min_learning_rate <= learning_rate):
        raise ValueError(
            f"min_learning_rate must be in [0, learning_rate={learning_rate}], got {min_learning_rate}"
        )
    # None means numba's current setting (numba.set_num_threads), as everywhere else in fastembed.
    threads = resolve_threads(threads)
    seed = new_seed(seed)
    indptr, indices = _check_csr(indptr, indices, vocab_size)

    counts = _count_tokens(indices, vocab_size)
    trained = counts >= min_count
    if not trained.any():
        raise ValueError(
            f"no token is held by at least min_count={min_count} cells (most common: {counts.max()})"
        )
    if not np.all(trained | (counts == 0)):  # some token that occurs is below min_count
        indptr, indices = _drop_untrained(indptr, indices, trained)
    # Skip-gram learns only from pairs of tokens in one cell; without any, training would silently return
    # the random initial vectors.
    if not np.any(np.diff(indptr) >= 2):
        raise ValueError(
            f"no cell holds 2 trained tokens ({indptr.size - 1} cells, {int(indptr[-1])} tokens held by at least "
            f"min_count={min_count} cells): skip-gram needs pairs of tokens in one cell, so there is nothing to "
            "learn; check the tokenization (universe, min_overlap) or lower min_count"
        )
    table = build_alias_table(counts, 0.75, mask=trained)
    w_in, w_out = init_vectors(vocab_size, embedding_dim, seed)
    w_in[~trained] = 0.0

    n_cells = indptr.size - 1
    n_blocks = -(-n_cells // batch_size)
    epoch_words = int(indptr[-1])
    words_total = float(max(epoch_words * epochs, 1))
    max_len = int(np.diff(indptr).max())
    # Cap the blocks per kernel call so long epochs still update the progress bar; the barrier at the end of
    # a call costs at most one block per thread.
    step = max(n_blocks if threads == 1 else 64 * threads, 1)
    run_blocks = _blocks_serial if threads == 1 else _blocks_parallel
    args = (table.threshold, table.primary, table.alias, np.uint64(seed))

    def run(epoch: int, b0: int, b1: int) -> None:
        run_blocks(
            b0,
            b1,
            indptr,
            indices,
            w_in,
            w_out,
            *args,
            epoch,
            batch_size,
            window_size,
            negative_samples,
            learning_rate,
            min_learning_rate,
            words_total,
            max_len,
        )

    bar = _progress_bar(epochs, progress)
    seconds = 0.0
    try:
        with numba_threads(threads):
            run(0, 0, 0)  # an empty range: compiles (or loads from cache) outside the timed loop
            for epoch in range(epochs):
                t0 = time.perf_counter()
                for b0 in range(0, n_blocks, step):
                    run(epoch, b0, min(b0 + step, n_blocks))
                elapsed = time.perf_counter() - t0
                seconds += elapsed
                if bar is not None:
                    done = (epoch + 1) * epoch_words
                    lr = max(
                        min_learning_rate,
                        learning_rate - (learning_rate - min_learning_rate) * done / words_total,
                    )
                    bar.set_postfix(
                        tokens_per_s=f"{epoch_words / max(elapsed, 1e-9):.3g}", lr=f"{lr:.2e}", refresh=False
                    )
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return SGNSResult(w_in, w_out, counts, trained, epoch_words * epochs, seconds)


def _progress_bar(epochs: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI, pipes).
    return tqdm(total=epochs, unit="epoch", desc="training", disable=None, file=sys.stderr)
