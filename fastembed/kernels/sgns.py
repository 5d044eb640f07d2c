"""Skip-gram with negative sampling (SGNS) over cells, as numba kernels.

A cell is a *set* of universe regions (tokens). Training learns an input vector and an output vector per token
so that tokens open in the same cells score high against each other. :func:`train_sgns` is the entry point;
``ScEmbed.train`` calls it with the dataset's CSR arrays.

Algorithm (per epoch, per cell of n tokens)
-------------------------------------------
1. With ``sample > 0``, each token of the cell is kept with its probability from :func:`keep_probabilities`
   (one uniform draw per token that may be dropped). The kept tokens are put in a fresh random order
   (Fisher-Yates): a cell has no token order.
2. Each token is a *centre* in turn. Its *contexts* are the next ``m = min(2w, n - 1)`` tokens of the shuffled
   cell, wrapping around at the end, with ``w`` uniform in ``1..window_size`` (word2vec's reduced window, so the
   same ``window_size + 1`` contexts per centre on average as a two-sided word2vec window).
3. ``negative_samples`` negatives are drawn once per centre from the unigram^0.75 alias table
   (``NEGATIVE_POWER``) and shared by all its contexts. Each context's input row is trained against the centre's
   output row (label 1) and the negatives' output rows (label 0), as in word2vec's skip-gram, where the context
   word is the input and the centre word the target.
4. The centre's and the negatives' output rows are copied into a small thread-local buffer and updated there in
   word2vec's order, except that contexts go in pairs: both are scored against the rows as they stand before
   either updates them (HogBatch, Ji et al. 2016, with batches of two), so their dot products are independent
   and each output row loaded serves two input rows. The rows are written back once per centre, over the shared
   rows (on many threads their changes are added instead; see the decisions below); the rows the next centre
   will touch are prefetched one centre ahead.
5. The learning rate decays linearly from ``learning_rate`` to ``min_learning_rate`` with the number of tokens
   processed before the current cell over all epochs; that count follows from the block's position in the
   epoch's order, so it does not depend on thread scheduling.
6. The sigmoid is read from a 1,000-entry table over ``[-6, 6]`` and saturates outside, as in word2vec and gensim.

Parallelism: cells are cut into blocks of ``batch_size`` consecutive cells; each epoch visits the blocks in a
fresh random order (:func:`block_order`), and blocks run in a ``prange`` and write the shared matrices without
locks (hogwild, Recht et al. 2011). Every block draws from its own RNG stream derived
from ``(seed, epoch, block)``, so with ``threads=1`` (which runs a serial compilation of the same block kernel) two
runs with the same seed give bit-identical vectors. With more threads the interleaving of updates is up to the OS,
so results are statistically equivalent but not bit-reproducible. Each thread takes the next block from a
shared atomic counter (:func:`fastembed._counter.fetch_add`) until none is left, and blocks shrink until every
thread has ``settings.BLOCKS_PER_THREAD`` of them, so a thread that runs slower (a deeper block, a busy
neighbour on a shared machine) never leaves the others waiting for more than one block. The block order is
shuffled so that the threads do not sweep the cells in file order (one donor's after the other's).

Decisions
---------
Each was measured on granja2019 against its alternative; the numbers are in bench/RESULTS-archive.md ("Trainer
design measurements", "Trainer design history").

* Negatives shared per centre, contexts scored in pairs (HogBatch with batches of two), output rows in a
  thread-local buffer padded to whole SIMD registers, row indices read into scalars, prefetching the next
  centre's rows, a sigmoid table, ``fastmath`` reassociation: each faster at the same quality. Scoring all
  contexts of a centre at once (fewer dot products) lost clustering quality.
* Helpers called from the training loop are inlined by numba (``inline="always"``) and read each array once:
  a call that passes arrays counts references with atomic instructions, which cost time on one thread and
  make threads contend for the same cache line.
* A one-sided circular window: each pair of tokens shows up once per epoch instead of twice, so an epoch covers
  about twice as many distinct pairs at the same cost.
* Not done: updating the output rows in place in ``w_out`` (the shared rows are then written after every pair
  instead of once per centre: no gain on two threads), and one draw of negatives per several centres (faster
  per epoch, but no better per second).
* The window stays word2vec's 5 by default. A cell is a set, so the window only decides how much of the cell a
  centre meets per pass; a wider window helped 14k cells but lowered quality on smaller data, so it is an
  option, not the default. :func:`auto_epochs` budgets context pairs, so a wider window gets fewer passes.
* While training, the shared matrices' rows start on cache-line boundaries and are padded to whole lines
  (``ROW_ALIGN``): faster, the same results.
* The buffered output rows overwrite the shared rows at the end of a centre rather than adding their changes,
  up to ``OVERWRITE_MAX_THREADS`` threads: faster at the same quality; the updates it loses to other threads
  grow with their number (see that constant).
* Frequent-token subsampling (``sample``, word2vec's) thins a region's occurrences only past a fixed number
  per pass (``sample="auto"``, :data:`THIN_OCCURRENCES`; what :class:`fastembed.ScEmbed` uses), so large data
  spend fewer updates on their most common regions and data of up to a few thousand cells train on every token.
  A threshold relative to the data's size (word2vec's own ``sample=1e-4``) also thinned small data, where it
  lowered transfer accuracy.
* The input vectors may start from the spectral warm start of :mod:`fastembed.warmstart` (``init="spectral"``,
  what :class:`fastembed.ScEmbed` uses), which needs several times fewer epochs than word2vec's random start.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from fastembed import settings
from fastembed.common.progress import check_progress, progress_bar
from fastembed.common.threads import numba_threads, resolve_threads
from fastembed.kernels._counter import fetch_add
from fastembed.kernels._prefetch import prefetch_row
from fastembed.kernels._rng import block_state, new_seed, randint, uniform
from fastembed.kernels.alias import alias_draw, build_alias_table
from fastembed.kernels.warmstart import spectral_init
from fastembed.settings import INLINE, INLINE_FAST, PARALLEL_FAST, SERIAL, SERIAL_FAST

__all__ = [
    "SGNSResult",
    "DivergedError",
    "train_sgns",
    "auto_epochs",
    "keep_probabilities",
    "init_vectors",
    "MAX_EXP",
    "NEGATIVE_POWER",
    "SIGMOID_TABLE_SIZE",
]

INITS = ("random", "spectral")
"""Ways to initialise the input vectors: word2vec's small random vectors, or the spectral warm start of
:mod:`fastembed.warmstart`. Output vectors always start at zero."""

NEGATIVE_POWER = 0.75
"""Negatives are drawn from the trained tokens' counts raised to this power (word2vec's and gensim's 0.75; 1 is
the unigram distribution, 0 uniform). Flatter draws gave the same quality, trained more slowly (they touch more
distinct rows) and would collide less between threads on the hot output rows, so word2vec's value stays
(bench/RESULTS-archive.md, "Trainer design history"). Read when training starts, not compiled in."""

ROW_ALIGN = 16
"""While training, the shared matrices' rows are zero-padded to a multiple of this many floats (16: 64 bytes, one
cache line) and start on 64-byte boundaries (:func:`_aligned_rows`; 0 trains on the rows as they are). A
100-float row then spans 7 whole cache lines instead of straddling 7-8 shared with its neighbours, the vector
loads never split a line, and the gathers and scatters run over whole registers: faster than unaligned rows
(``bench/kernel_ab.py``; bench/RESULTS-archive.md, "Trainer design history"). The padding costs some memory for
the matrices during training (12% at dim 100), and the results are the same bytes as without it (the products
run over the same buffer width). Read when training starts, not compiled in."""
_ALIGN_BYTES = 64

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
# The table is padded to a power of two so that the index can be masked into it (see _sigmoid).
_SIGMOID_MASK = (1 << int(SIGMOID_TABLE_SIZE).bit_length()) - 1
_SIGMOID = np.concatenate([_SIGMOID, np.full(_SIGMOID_MASK + 1 - _SIGMOID.size, _SIGMOID[-1], np.float32)])
_HI = np.float32(MAX_EXP)
_LO = np.float32(-MAX_EXP)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


class DivergedError(ValueError):
    """Training produced NaN or infinite vectors (the learning rate is too high for the data).

    A ``ValueError`` so that the command line reports it as a one-line error; :meth:`fastembed.ScEmbed.train`
    passes it on as it is rather than blaming the dataset."""


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
        Wall time of the initialisation and the training epochs (excluding validation and JIT compilation).
    epochs_done : int
        Epochs completed: fewer than asked when training was interrupted (Ctrl-C), in which case the
        vectors are those of the last completed kernel call (part of an epoch may be in them).
    sample : float
        The subsampling threshold used, ``sample="auto"`` resolved (:func:`resolve_sample`).
    kept_share : float
        Expected share of the trained token occurrences kept per pass by the subsampling (1.0 without).
    """

    w_in: np.ndarray
    w_out: np.ndarray
    counts: np.ndarray
    trained: np.ndarray
    words_processed: int
    seconds: float
    epochs_done: int
    sample: float = 0.0
    kept_share: float = 1.0


class _KernelParams(NamedTuple):
    """Everything the block kernel needs besides the data, the matrices and the epoch, in one value.

    Numba compiles a NamedTuple into a struct with typed, named fields, so a call site cannot swap two floats
    (or two arrays) by position, as it could with a long positional argument list. Build it with
    :func:`_kernel_params`, which fixes every field's type so that each run reuses one compiled kernel.
    """

    threshold: np.ndarray
    """uint32[n_slots] alias-table thresholds (:class:`fastembed.alias.AliasTable`)."""
    primary: np.ndarray
    """int32[n_slots] alias-table primary tokens."""
    alias: np.ndarray
    """int32[n_slots] alias-table alias tokens."""
    keep: np.ndarray
    """float32[vocab_size] subsampling keep probabilities (:func:`keep_probabilities`)."""
    seed: np.uint64
    window: np.int64
    negative: np.int64
    batch_size: np.int64
    lr0: np.float64
    lr_min: np.float64
    words_total: np.float64
    """Tokens processed over the whole run, which the learning-rate decay spans."""
    max_len: np.int64
    """The longest cell (the per-block shuffle buffer's size)."""
    dim: np.int64
    """The embedding's dimensions: the shared matrices' rows may be longer (zero padding, ``ROW_ALIGN``)."""
    add_back: np.bool_
    """Write the buffered output rows back by adding their changes (True) or by overwriting (False); see
    ``OVERWRITE_MAX_THREADS``."""
    hot_ids: np.ndarray
    """int64[n_hot] the output rows each thread trains in a private copy (``PRIVATE_HOT_ROWS``); empty for none."""
    hot_slot: np.ndarray
    """int32[vocab_size] each token's row in the private copies, or -1 (every token when ``hot_ids`` is empty)."""
    merge_tokens: np.int64
    """A thread adds its private rows' changes into ``w_out`` (and reloads them) once it has processed this many
    tokens since the last merge, and at the end of each block (``HOT_MERGE_TOKENS``)."""


def _kernel_params(
    table,
    keep,
    *,
    seed,
    window,
    negative,
    batch_size,
    lr0,
    lr_min,
    words_total,
    max_len,
    dim,
    add_back,
    hot_ids=None,
    merge_tokens=1,
):
    hot_ids = np.zeros(0, np.int64) if hot_ids is None else np.asarray(hot_ids, dtype=np.int64)
    hot_slot = np.full(keep.size, -1, dtype=np.int32)
    hot_slot[hot_ids] = np.arange(hot_ids.size, dtype=np.int32)
    return _KernelParams(
        threshold=table.threshold,
        primary=table.primary,
        alias=table.alias,
        keep=keep,
        seed=np.uint64(seed),
        window=np.int64(window),
        negative=np.int64(negative),
        batch_size=np.int64(batch_size),
        lr0=np.float64(lr0),
        lr_min=np.float64(lr_min),
        words_total=np.float64(words_total),
        max_len=np.int64(max_len),
        dim=np.int64(dim),
        add_back=np.bool_(add_back),
        hot_ids=hot_ids,
        hot_slot=hot_slot,
        merge_tokens=np.int64(max(1, merge_tokens)),
    )


@njit(**INLINE_FAST)
def _sigmoid(f):
    """word2vec's table sigmoid, saturated outside +-MAX_EXP. Written with min/max and selects rather than
    early returns so it compiles without branches. A NaN score (a diverging run, reported when its epoch ends)
    passes the float clamp and converts to an arbitrary integer; masking the index into the power-of-two table
    keeps that read inside it (bin 0 for x86's INT_MIN) at the cost of one AND, cheaper than a second clamp."""
    x = min(max(f, _LO), _HI)
    s = _SIGMOID[int((x + _HI) * _SIGMOID_SCALE) & _SIGMOID_MASK]
    s = _ONE if f >= _HI else s
    return _ZERO if f <= _LO else s


PAD = 8
"""The thread-local buffers' rows are padded to a multiple of this many floats (one AVX2 register)."""
TILE = 3
"""Output rows scored and updated together in one pass over the dimensions (see :func:`_train_centre`)."""
OVERWRITE_MAX_THREADS = 32
"""Up to this many threads a centre's buffered output rows overwrite the shared rows when it ends; with more, their
changes are added instead. Overwriting saves a copy of the rows and a read of the shared ones, but drops the
updates other threads wrote to those rows during the centre (about a microsecond), a share that grows with the
threads. Training that dropped updates at the rates estimated for 16 and 48 threads kept granja2019's quality;
32 leaves a margin below what was emulated (bench/RESULTS-archive.md, "Trainer design history"). Read when
training starts, not compiled in."""


PRIVATE_HOT_ROWS = 0
"""With ``PRIVATE_HOT_MIN_THREADS`` threads or more, each thread trains its own copy of this many output rows:
those written most (a row is written once per centre it is and once per negative drawn for it, so the weight is
its kept occurrences plus ``negative_samples`` x all kept occurrences x its share of the negatives' draws). The
threads' changes are added into the shared rows every ``HOT_MERGE_TOKENS / (threads - 1)`` tokens and at the end
of each block (:func:`_hot_merge`), so two threads no longer write the same cache lines at every centre. 0 turns
it off. Read when training starts, not compiled in; see bench/RESULTS.md, "Private hot output rows"."""
PRIVATE_HOT_MIN_THREADS = 2
"""Fewest threads that use ``PRIVATE_HOT_ROWS``: one thread shares nothing, and keeps its bit-identical results."""
HOT_MERGE_TOKENS = 16_384
"""Between two merges of its private rows a thread misses the other threads' changes to them; merging after
``HOT_MERGE_TOKENS / (threads - 1)`` of its own tokens bounds what it misses to about this many tokens of the
others' work, whatever the number of threads. Read when training starts."""


def _hot_rows(
    counts: np.ndarray, keep: np.ndarray, trained: np.ndarray, negative: int, n_hot: int
) -> np.ndarray:
    """The ``n_hot`` output rows written most often per pass (int64, ascending; fewer when fewer tokens are
    trained): a row is written for each kept occurrence of its token as a centre and for each draw of it as a
    negative, ``negative`` per kept occurrence of any token, from counts^``NEGATIVE_POWER``."""
    n_hot = int(min(n_hot, int(trained.sum())))
    if n_hot <= 0:
        return np.zeros(0, np.int64)
    kept = np.where(trained, counts * keep.astype(np.float64), 0.0)
    q = np.where(trained, counts.astype(np.float64) ** NEGATIVE_POWER, 0.0)
    writes = kept + negative * kept.sum() * q / q.sum()
    return np.sort(np.argsort(-writes, kind="stable")[:n_hot]).astype(np.int64)


@njit(**INLINE_FAST)
def _scores3(hs, out, k, width):
    """Dot products of the pair's input rows ``hs[0]``, ``hs[1]`` with output rows ``k..k+2`` of ``out``:
    ``(h0.o_k, h0.o_k+1, h0.o_k+2, h1.o_k, h1.o_k+1, h1.o_k+2)`` as float32. Six accumulators fit the AVX2
    registers beside the loads; twelve would spill."""
    f00 = np.float32(0.0)
    f01 = np.float32(0.0)
    f02 = np.float32(0.0)
    f10 = np.float32(0.0)
    f11 = np.float32(0.0)
    f12 = np.float32(0.0)
    for d in range(width):
        x0 = hs[0, d]
        x1 = hs[1, d]
        o0 = out[k, d]
        o1 = out[k + 1, d]
        o2 = out[k + 2, d]
        f00 += x0 * o0
        f01 += x0 * o1
        f02 += x0 * o2
        f10 += x1 * o0
        f11 += x1 * o1
        f12 += x1 * o2
    return f00, f01, f02, f10, f11, f12


@njit(**INLINE_FAST)
def _train_centre(w_in, w_out, ctxs, m, ids, n_out, out, live, lr, hs, gs, out0, add_back, slots, priv):
    """All ``m`` contexts of one centre against its output rows, two contexts at a time.

    ``ctxs[:m]`` are the context tokens (their input rows are trained), ``ids[:n_out]`` the output rows: the
    centre (row 0, label 1) and the negatives (label 0). ``live`` is 1 for rows that train and 0 for the rest
    (a negative that hits the centre, and the zero rows padding ``out`` to a multiple of ``TILE``).

    The output rows are copied into ``out`` and updated there in word2vec's order, except that two contexts
    are scored together against the rows as they stand before either updates them (HogBatch, Ji et al. 2016,
    with batches of two): the two contexts' 2 x n_out dot products are independent, so the CPU overlaps them,
    and each output row loaded serves two input rows. At the end the live rows overwrite their rows of ``w_out``
    (a negative drawn twice keeps its later slot's row) or, with ``add_back``, their changes since the copy in
    ``out0`` are added to them (see ``OVERWRITE_MAX_THREADS``).
    Scoring all contexts of a centre at once was faster still but lowered clustering quality.

    With six output rows (the default 5 negatives, or 3-4 plus padding) the pair's twelve scores are taken
    first and a single pass over the dimensions then updates the output rows and the two input rows in place,
    without the gradient buffer; other counts go through the rows ``TILE`` at a time, gradients in ``gs``.

    Scratch buffers owned by the calling block: ``out`` and ``out0`` float32[>= n_out rounded up to TILE, width]
    (padding rows and columns zero; ``out0`` keeps the rows as they were, only with ``add_back``), ``hs``
    float32[2, width] (the pair's input rows), ``gs`` float32[2, width] (their gradients); ``width >= dim``.
    """
    n_rows = out.shape[0]
    # The products run over the buffers' padded width (zeros past the embedding's dimensions that stay zero),
    # so the vectorised loops have no scalar remainder. The gathers and scatters cover ``ncol`` columns: the
    # whole width when the shared rows are padded as wide (``ROW_ALIGN``; their padding is zero and stays
    # zero), else the rows' own length.
    width = out.shape[1]
    ncol = min(width, w_in.shape[1])
    for k in range(n_out):
        r = ids[k]
        # A row with a slot is read from (and written to) this thread's private copy (PRIVATE_HOT_ROWS).
        s = slots[k]
        if s >= 0:
            for d in range(ncol):
                out[k, d] = priv[s, d]
        else:
            for d in range(ncol):
                out[k, d] = w_out[r, d]
        if add_back:
            for d in range(ncol):
                out0[k, d] = out[k, d]
    for j in range(0, m, 2):
        # An odd last context is paired with a zero row: its scores are sigmoid(0), but every update it
        # makes multiplies the zero row, and it is never written back.
        c0 = ctxs[j]
        two = j + 1 < m
        c1 = ctxs[j + 1] if two else c0
        for d in range(ncol):
            hs[0, d] = w_in[c0, d]
            hs[1, d] = w_in[c1, d] if two else _ZERO
        if n_rows == 2 * TILE:
            # Six output rows (5 negatives + the centre): all twelve scores first, then one pass over the
            # dimensions updates the rows and the two input rows in place (no gradient buffer round trips).
            f00, f01, f02, f10, f11, f12 = _scores3(hs, out, 0, width)
            f03, f04, f05, f13, f14, f15 = _scores3(hs, out, 3, width)
            a0 = live[0] * (_ONE - _sigmoid(f00)) * lr
            a1 = live[1] * (_ZERO - _sigmoid(f01)) * lr
            a2 = live[2] * (_ZERO - _sigmoid(f02)) * lr
            a3 = live[3] * (_ZERO - _sigmoid(f03)) * lr
            a4 = live[4] * (_ZERO - _sigmoid(f04)) * lr
            a5 = live[5] * (_ZERO - _sigmoid(f05)) * lr
            b0 = live[0] * (_ONE - _sigmoid(f10)) * lr
            b1 = live[1] * (_ZERO - _sigmoid(f11)) * lr
            b2 = live[2] * (_ZERO - _sigmoid(f12)) * lr
            b3 = live[3] * (_ZERO - _sigmoid(f13)) * lr
            b4 = live[4] * (_ZERO - _sigmoid(f14)) * lr
            b5 = live[5] * (_ZERO - _sigmoid(f15)) * lr
            for d in range(width):
                x0 = hs[0, d]
                x1 = hs[1, d]
                o0 = out[0, d]
                o1 = out[1, d]
                o2 = out[2, d]
                o3 = out[3, d]
                o4 = out[4, d]
                o5 = out[5, d]
                hs[0, d] = x0 + ((a0 * o0 + a1 * o1) + (a2 * o2 + a3 * o3)) + (a4 * o4 + a5 * o5)
                hs[1, d] = x1 + ((b0 * o0 + b1 * o1) + (b2 * o2 + b3 * o3)) + (b4 * o4 + b5 * o5)
                out[0, d] = o0 + a0 * x0 + b0 * x1
                out[1, d] = o1 + a1 * x0 + b1 * x1
                out[2, d] = o2 + a2 * x0 + b2 * x1
                out[3, d] = o3 + a3 * x0 + b3 * x1
                out[4, d] = o4 + a4 * x0 + b4 * x1
                out[5, d] = o5 + a5 * x0 + b5 * x1
            for d in range(ncol):
                w_in[c0, d] = hs[0, d]
            if two:
                for d in range(ncol):
                    w_in[c1, d] = hs[1, d]
            continue
        for d in range(width):
            gs[0, d] = _ZERO
            gs[1, d] = _ZERO
        for k in range(0, n_rows, TILE):
            f00, f01, f02, f10, f11, f12 = _scores3(hs, out, k, width)
            label = _ONE if k == 0 else _ZERO
            a0 = live[k] * (label - _sigmoid(f00)) * lr
            a1 = live[k + 1] * (_ZERO - _sigmoid(f01)) * lr
            a2 = live[k + 2] * (_ZERO - _sigmoid(f02)) * lr
            b0 = live[k] * (label - _sigmoid(f10)) * lr
            b1 = live[k + 1] * (_ZERO - _sigmoid(f11)) * lr
            b2 = live[k + 2] * (_ZERO - _sigmoid(f12)) * lr
            # Input gradients against the rows as scored, then the rows take both contexts' updates.
            for d in range(width):
                x0 = hs[0, d]
                x1 = hs[1, d]
                o0 = out[k, d]
                o1 = out[k + 1, d]
                o2 = out[k + 2, d]
                gs[0, d] += a0 * o0 + a1 * o1 + a2 * o2
                gs[1, d] += b0 * o0 + b1 * o1 + b2 * o2
                out[k, d] = o0 + a0 * x0 + b0 * x1
                out[k + 1, d] = o1 + a1 * x0 + b1 * x1
                out[k + 2, d] = o2 + a2 * x0 + b2 * x1
        for d in range(ncol):
            w_in[c0, d] = hs[0, d] + gs[0, d]
        if two:
            for d in range(ncol):
                w_in[c1, d] = hs[1, d] + gs[1, d]
    # Overwriting skips the copy to ``out0`` and the read of the shared rows (+4-14% words/s) but drops the
    # updates other threads made to these rows during this centre; adding keeps them (OVERWRITE_MAX_THREADS).
    for k in range(n_out):
        if live[k] != _ZERO:
            r = ids[k]
            s = slots[k]
            if s >= 0:
                # A private row takes the same rule as a shared one (with add_back, a negative drawn twice adds
                # both slots' changes), though no other thread writes it.
                if add_back:
                    for d in range(ncol):
                        priv[s, d] += out[k, d] - out0[k, d]
                else:
                    for d in range(ncol):
                        priv[s, d] = out[k, d]
            elif add_back:
                for d in range(ncol):
                    w_out[r, d] += out[k, d] - out0[k, d]
            else:
                for d in range(ncol):
                    w_out[r, d] = out[k, d]


@njit(**INLINE)
def _hot_buffers(params, w_out):
    """One thread's private copies of the hot output rows: ``(priv, snap)``, float32[n_hot, w_out.shape[1]]
    each (n_hot = 0 when the run has none)."""
    n_hot = params.hot_ids.size
    return (
        np.zeros((n_hot, w_out.shape[1]), dtype=np.float32),
        np.zeros((n_hot, w_out.shape[1]), dtype=np.float32),
    )


@njit(**INLINE_FAST)
def _hot_load(priv, snap, w_out, hot_ids, ncol):
    """Copy the shared rows ``w_out[hot_ids]`` into this thread's ``priv`` and ``snap`` (first ``ncol``
    columns)."""
    for s in range(hot_ids.size):
        r = hot_ids[s]
        for d in range(ncol):
            v = w_out[r, d]
            priv[s, d] = v
            snap[s, d] = v


@njit(**INLINE_FAST)
def _hot_merge(priv, snap, w_out, hot_ids, ncol):
    """Add what this thread changed in its private rows since they were loaded (``priv - snap``) to the shared
    rows ``w_out[hot_ids]``, then reload both copies from the result, which holds the other threads' merged
    changes too. Adding rather than overwriting keeps every thread's changes; the add is not atomic, so two
    threads merging the same row at the same instant can lose one change (hogwild), which is rare at a merge
    per thousands of tokens."""
    for s in range(hot_ids.size):
        r = hot_ids[s]
        for d in range(ncol):
            v = w_out[r, d] + (priv[s, d] - snap[s, d])
            w_out[r, d] = v
            priv[s, d] = v
            snap[s, d] = v


@njit(**SERIAL_FAST)
def _train_block(block, indptr, indices, w_in, w_out, params, epoch, words_done, priv, snap):
    """Train on cells ``[block * batch_size, (block + 1) * batch_size)`` for one epoch.

    ``params`` is a :class:`_KernelParams`; ``words_done`` is the number of tokens processed, over all epochs,
    before this block (it drives the learning rate). Draws from the RNG stream of ``(seed, epoch, block)``, in
    this order per cell: the subsampling draws (only for tokens that may be dropped), the shuffle, the
    negatives of centre 0, then for each centre ``i`` the negatives of centre ``i + 1`` (if any) and the
    window of ``i``.
    """
    # Fields are read into locals once: reading an array out of the struct inside the loops would count
    # references on every access.
    threshold, primary, alias, keep = params.threshold, params.primary, params.alias, params.keep
    window, negative, batch_size = params.window, params.negative, params.batch_size
    lr0, lr_min, words_total = params.lr0, params.lr_min, params.words_total
    max_len, add_back, dim = params.max_len, params.add_back, params.dim
    # The calling thread's private copies of the hot output rows (float32[n_hot, w_out.shape[1]] each, ``priv``
    # trained, ``snap`` as last loaded from w_out); unused when params.hot_ids is empty (one thread).
    hot_ids, hot_slot, merge_tokens = params.hot_ids, params.hot_slot, params.merge_tokens
    use_hot = hot_ids.size > 0
    state = block_state(params.seed, epoch, block)
    n_cells = indptr.size - 1
    n_out = negative + 1
    cell = np.empty(max_len, dtype=np.int32)
    ids = np.empty(n_out, dtype=np.int64)
    upcoming = np.empty(n_out, dtype=np.int64)
    slots = np.full(n_out, -1, dtype=np.int64)
    upcoming_slots = np.full(n_out, -1, dtype=np.int64)
    n_rows = -(-n_out // TILE) * TILE
    # Padding rows stay zero with live = 0, so they never change and are never written back.
    live = np.zeros(n_rows, dtype=np.float32)
    live[:n_out] = _ONE
    width = -(-dim // PAD) * PAD
    out = np.zeros((n_rows, width), dtype=np.float32)
    out0 = np.zeros((n_rows, width), dtype=np.float32)
    ctxs = np.empty(2 * window, dtype=np.int64)
    hs = np.zeros((2, width), dtype=np.float32)
    gs = np.zeros((2, width), dtype=np.float32)
    lr_span = lr0 - lr_min
    done = words_done
    ncol = w_out.shape[1]
    if use_hot:
        _hot_load(priv, snap, w_out, hot_ids, ncol)
    since_merge = 0
    for c in range(block * batch_size, min((block + 1) * batch_size, n_cells)):
        start = indptr[c]
        n = indptr[c + 1] - start
        if use_hot:
            # The private rows miss what the other threads write to them until the next merge; merging after a
            # fixed number of tokens bounds that, however long the cells are.
            if since_merge >= merge_tokens:
                _hot_merge(priv, snap, w_out, hot_ids, ncol)
                since_merge = 0
            since_merge += n
        lr = np.float32(max(lr_min, lr0 - lr_span * done / words_total))
        done += n
        if n < 2:
            continue
        # Frequent-token subsampling (word2vec's ``sample``): a token stays with probability keep[t]. Tokens
        # that always stay draw no random number, so sample=0 leaves the random stream as it was.
        kept = 0
        for i in range(n):
            t = indices[start + i]
            p = keep[t]
            if p >= _ONE or uniform(state) < p:
                cell[kept] = t
                kept += 1
        n = kept
        if n < 2:
            continue
        for i in range(n - 1, 0, -1):
            j = randint(state, i + 1)
            tmp = cell[i]
            cell[i] = cell[j]
            cell[j] = tmp
        # Negatives are drawn one centre ahead so that their output rows can be prefetched.
        for k in range(1, n_out):
            t = alias_draw(threshold, primary, alias, state)
            upcoming[k] = t
            if use_hot:
                upcoming_slots[k] = hot_slot[t]
        for i in range(n):
            centre = np.int64(cell[i])
            ids[0] = centre
            if use_hot:
                slots[0] = hot_slot[centre]
            for k in range(1, n_out):
                t = upcoming[k]
                ids[k] = t
                slots[k] = upcoming_slots[k]
                # word2vec skips a negative that hits the target itself.
                live[k] = _ZERO if t == centre else _ONE
            if i + 1 < n:
                for k in range(1, n_out):
                    t = alias_draw(threshold, primary, alias, state)
                    upcoming[k] = t
                    if use_hot:
                        s = hot_slot[t]
                        upcoming_slots[k] = s
                        if s >= 0:
                            prefetch_row(priv, s)
                        else:
                            prefetch_row(w_out, t)
                    else:
                        prefetch_row(w_out, t)
                s = hot_slot[cell[i + 1]] if use_hot else -1
                if s >= 0:
                    prefetch_row(priv, s)
                else:
                    prefetch_row(w_out, cell[i + 1])
                # The farthest context the next centre can reach is the only input row it may need afresh.
                prefetch_row(w_in, cell[(i + 2 * window + 1) % n])
            m = min(2 * (window - randint(state, window)), n - 1)
            # The contexts are the next m tokens of the shuffled cell, wrapping around at its end.
            j = i
            for q in range(m):
                j += 1
                if j == n:
                    j = 0
                ctxs[q] = cell[j]
            _train_centre(
                w_in, w_out, ctxs, m, ids, n_out, out, live, lr, hs, gs, out0, add_back, slots, priv
            )
    if use_hot:
        _hot_merge(priv, snap, w_out, hot_ids, ncol)
    return done - words_done


# Two drivers of the same block kernel: the serial one is deterministic (threads=1), the parallel one hogwild.
# They are separate functions rather than one function compiled twice (umap-learn style) because numba's on-disk
# cache keys entries by bytecode and signature, not by compile flags: with cache=True one variant could load the
# other's machine code.
@njit(**SERIAL_FAST)
def _blocks_serial(p0, p1, order, starts, indptr, indices, w_in, w_out, params, epoch):
    """Blocks ``order[p0:p1]`` of one epoch, in that order (deterministic); ``starts[p]`` is the number of
    tokens processed over all epochs before block ``order[p]`` (see :func:`block_order`)."""
    priv, snap = _hot_buffers(params, w_out)
    for p in range(p0, p1):
        _train_block(order[p], indptr, indices, w_in, w_out, params, epoch, starts[p], priv, snap)


@njit(**PARALLEL_FAST)
def _blocks_parallel(threads, counter, p1, order, starts, indptr, indices, w_in, w_out, params, epoch):
    """Blocks ``order[counter[0]:p1]`` of one epoch, concurrently (hogwild): each of ``threads`` threads takes
    the next position from the shared ``counter`` (int64[1], advanced atomically) until none is left, so no
    thread waits for another while blocks remain."""
    for _ in prange(threads):
        # Each thread's own copies of the hot output rows, reused by all the blocks it takes.
        priv, snap = _hot_buffers(params, w_out)
        while True:
            p = fetch_add(counter, 1)
            if p >= p1:
                break
            _train_block(order[p], indptr, indices, w_in, w_out, params, epoch, starts[p], priv, snap)


SHUFFLE_BLOCKS = True
"""Visit an epoch's blocks in a fresh random order (see :func:`block_order`)."""


def block_order(seed: int, epoch: int, block_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order in which one epoch visits its blocks, and the tokens processed before each.

    Parameters
    ----------
    seed : int
        The run's uint64 seed (:func:`fastembed._rng.new_seed`).
    epoch : int
    block_tokens : int64[n_blocks]
        Tokens in each block (its cells' lengths before subsampling).

    Returns
    -------
    order : int64[n_blocks]
        A permutation of the blocks, drawn from ``(seed, epoch)`` (the identity if ``SHUFFLE_BLOCKS`` is off).
    starts : int64[n_blocks]
        ``epoch * sum(block_tokens)`` plus the tokens of ``order[:p]``: what the learning-rate decay counts as
        done when block ``order[p]`` starts.

    Cells are stored grouped (by sample, donor, batch: granja2019 holds one donor's cells, then the other's), and
    a pass in file order lets the last stretch of every epoch pull the vectors towards one group. Shuffling the
    blocks keeps each epoch's updates mixed; within a block the cells stay in file order.
    """
    n_blocks = block_tokens.size
    if SHUFFLE_BLOCKS:
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, int(epoch), 0xB10C])
        order = np.random.default_rng(ss).permutation(n_blocks).astype(np.int64)
    else:
        order = np.arange(n_blocks, dtype=np.int64)
    before = np.concatenate(([0], np.cumsum(block_tokens[order])[:-1])).astype(np.int64)
    return order, int(epoch) * int(block_tokens.sum()) + before


@njit(**SERIAL)
def _count_tokens(indices, vocab_size):
    """Occurrences of each token (int64[vocab_size]). np.bincount would first copy int32 ids to int64, an
    nnz-sized temporary that showed up in peak memory."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for t in indices:
        counts[t] += 1
    return counts


PAIR_BUDGET = 55_000
"""Context pairs of the average trained token over the run that the default number of epochs aims at (see
:func:`auto_epochs`): 40 epochs on granja2019 (14k cells) at window 5, where its transfer accuracy stopped
rising (bench/RESULTS-archive.md, "Trainer design history")."""
MIN_EPOCHS = 5
"""Fewest epochs the data-derived default gives."""
MAX_PAIRS_PER_OCCURRENCE = 240
"""Most context pairs per token occurrence the data-derived default gives over the run, from
``LARGE_DATA_CELLS`` cells on (40 epochs at window 5, 12 at window 20)."""
SMALL_PAIRS_PER_OCCURRENCE = 120
"""Most context pairs per token occurrence up to ``SMALL_DATA_CELLS`` cells (20 epochs at window 5). With the
spectral warm start, 20 passes gave about the quality of 40 on small data in half the time, while from about
5,000 cells on 40 passes gave better embeddings: more cells resolve finer cell types, which the longer refinement
of the warm start then pays for (bench/RESULTS-archive.md, "Trainer design history")."""
SMALL_DATA_CELLS = 2_000
LARGE_DATA_CELLS = 5_000
"""Between these numbers of cells the cap on pairs per occurrence rises from ``SMALL_PAIRS_PER_OCCURRENCE`` to
``MAX_PAIRS_PER_OCCURRENCE``, linearly in the logarithm of the number of cells."""


def _max_pairs_per_occurrence(n_cells: int) -> float:
    """The cap on context pairs per token occurrence for a dataset of ``n_cells`` cells (see above)."""
    if n_cells <= SMALL_DATA_CELLS:
        return float(SMALL_PAIRS_PER_OCCURRENCE)
    ramp = min(1.0, np.log(n_cells / SMALL_DATA_CELLS) / np.log(LARGE_DATA_CELLS / SMALL_DATA_CELLS))
    return SMALL_PAIRS_PER_OCCURRENCE + ramp * (MAX_PAIRS_PER_OCCURRENCE - SMALL_PAIRS_PER_OCCURRENCE)


def auto_epochs(
    indptr: np.ndarray, indices: np.ndarray, vocab_size: int, *, window_size: int, min_count: int = 1
) -> int:
    """The default number of epochs for a dataset: enough passes for the average trained token to be in about
    ``PAIR_BUDGET`` context pairs over the run, at least ``MIN_EPOCHS``, and at most a cap on the pairs per
    token occurrence that grows with the number of cells (``SMALL_PAIRS_PER_OCCURRENCE`` up to
    ``SMALL_DATA_CELLS`` cells, ``MAX_PAIRS_PER_OCCURRENCE`` from ``LARGE_DATA_CELLS`` on), divided by the
    ``window_size + 1`` pairs an occurrence is in per pass, rounded up.

    On large data a region's vector improves with the number of pairs it is trained in, not with the number
    of passes: a region held by 50,000 cells of an atlas needs a tenth of the passes of one held by 5,000, and a
    window twice as wide gives each occurrence twice the pairs per pass. So atlases and wide windows get fewer
    passes. Small datasets need fewer passes for another reason: with the spectral warm start, the quality of
    400 to 1,000 cells stopped rising after 20 passes at window 5, where that of 5,000 cells or more rose up
    to 40.
    At window 5 this gives 20 epochs up to 2,000 cells, 30 at ~3,200, 40 from 5,000 cells to granja2019's size
    (14k cells), and fewer above it.

    Parameters
    ----------
    indptr : int[n_cells + 1], indices : int[nnz]
        The cells' tokens (CSR), as for :func:`train_sgns`.
    vocab_size : int
    window_size : int
        As for :func:`train_sgns`: each occurrence is in ``window_size + 1`` context pairs per pass on average.
    min_count : int
        Tokens held by fewer cells are not trained and do not count, nor do cells without a trained token.

    Returns
    -------
    int
        Epochs in ``[MIN_EPOCHS, max(MIN_EPOCHS, ceil(MAX_PAIRS_PER_OCCURRENCE / (window_size + 1)))]``.

    Raises
    ------
    ValueError
        ``indptr`` does not describe ``indices`` (as for :func:`train_sgns`), or a token id is outside
        ``[0, vocab_size)``.
    """
    pairs_per_pass = int(window_size) + 1
    if np.asarray(indices).size == 0:
        return _epochs_cap(0, pairs_per_pass)
    # The counting kernels index without bounds checks: an indptr that does not match indices, or a token id
    # outside the vocabulary, must be an error here rather than a read or write out of bounds.
    indptr, indices = _check_csr(indptr, indices, int(vocab_size))
    counts = _count_tokens(indices, int(vocab_size))
    trained = counts >= min_count
    if not trained.any():
        return _epochs_cap(0, pairs_per_pass)
    n_cells = _count_cells_with(indptr, indices, trained)
    per_token = counts[trained].mean() * pairs_per_pass
    return int(np.clip(np.ceil(PAIR_BUDGET / per_token), MIN_EPOCHS, _epochs_cap(n_cells, pairs_per_pass)))


@njit(**SERIAL)
def _count_cells_with(indptr, indices, trained):
    """Cells holding at least one token of ``trained`` (bool[vocab_size]): the cells there is something to
    learn from. A loop rather than a mask of the tokens, which would be an nnz-sized temporary."""
    n = 0
    for c in range(indptr.size - 1):
        for i in range(indptr[c], indptr[c + 1]):
            if trained[indices[i]]:
                n += 1
                break
    return n


def _epochs_cap(n_cells: int, pairs_per_pass: int) -> int:
    return max(MIN_EPOCHS, int(np.ceil(_max_pairs_per_occurrence(n_cells) / pairs_per_pass)))


THIN_OCCURRENCES = 500
"""``sample="auto"``: word2vec's subsampling with the threshold set so that a token's occurrences start to be
thinned past about 2.6 x this many per pass (1,310 cells holding the region), whatever the size of the data. A
region seen that often gets its vector from many updates anyway; thinning its occurrences spends the passes on
the rest. word2vec's ``sample`` is relative to the data's size instead, so it thins small data as much as large
data, where it cost transfer accuracy; this rule leaves data of up to a few thousand cells as they are
(bench/RESULTS-archive.md, "Trainer design history")."""


def resolve_sample(sample, counts: np.ndarray, trained: np.ndarray) -> float:
    """The subsampling threshold that ``sample`` stands for on this data.

    Parameters
    ----------
    sample : float or "auto"
        A number in ``[0, 1)`` is word2vec's threshold and is returned as it is; ``"auto"`` is
        ``THIN_OCCURRENCES / (trained token occurrences per pass)``, so that the tokens thinned are those with
        more than about ``2.6 * THIN_OCCURRENCES`` occurrences per pass.
    counts : int64[vocab_size]
        Occurrences of each token.
    trained : bool[vocab_size]
        Tokens that take part in training.

    Returns
    -------
    float
        The threshold for :func:`keep_probabilities` (``>= 1`` keeps every token, as does 0).

    Raises
    ------
    ValueError
        ``sample`` is neither ``"auto"`` nor a number in ``[0, 1)``.
    """
    if isinstance(sample, str):
        if sample != "auto":
            raise ValueError(f"sample must be 'auto' or a number in [0, 1), got {sample!r}"[:300])
        total = float(counts[trained].sum())
        return THIN_OCCURRENCES / total if total > 0 else 0.0
    if (
        isinstance(sample, bool)
        or not isinstance(sample, int | float | np.integer | np.floating)
        or not (0 <= sample < 1)
    ):
        raise ValueError(f"sample must be 'auto' or a number in [0, 1), got {sample!r}"[:300])
    return float(sample)


def keep_probabilities(counts: np.ndarray, trained: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's subsampling of frequent tokens: the probability that an occurrence of each token is kept.

    A token making up a fraction ``f`` of all trained occurrences is kept with probability
    ``min(1, (sqrt(f / sample) + 1) * sample / f)`` (word2vec.c; gensim's ``sample``), so tokens rarer than
    about ``sample`` are always kept and very frequent ones (regions open in most cells) are thinned.

    Parameters
    ----------
    counts : int64[vocab_size]
        Occurrences of each token.
    trained : bool[vocab_size]
        Tokens that take part in training; only their occurrences count towards ``f``.
    sample : float
        The threshold; 0 keeps everything.

    Returns
    -------
    float32[vocab_size]
        Keep probabilities in ``(0, 1]``; exactly 1 for tokens that are always kept.
    """
    keep = np.ones(counts.size, dtype=np.float32)
    if sample > 0:
        total = float(counts[trained].sum())
        f = counts[trained] / total
        keep[trained] = np.minimum(1.0, (np.sqrt(f / sample) + 1.0) * sample / f)
    return keep


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


def _aligned_rows(m: np.ndarray) -> np.ndarray:
    """A copy of ``m`` (float32[n, dim]) whose rows start on 64-byte boundaries and are zero-padded to a multiple
    of ``ROW_ALIGN`` floats: float32[n, stride], C-contiguous, a view of a slightly larger buffer. With
    ``ROW_ALIGN = 0``, ``m`` itself."""
    if not ROW_ALIGN:
        return m
    n, dim = m.shape
    stride = -(-dim // ROW_ALIGN) * ROW_ALIGN
    buf = np.zeros(n * stride + _ALIGN_BYTES // 4, dtype=np.float32)
    skip = (-buf.ctypes.data % _ALIGN_BYTES) // 4
    out = buf[skip : skip + n * stride].reshape(n, stride)
    out[:, :dim] = m
    return out


@njit(**SERIAL)
def _compact_rows(flat, n, stride, dim):
    # Row i moves from flat[i * stride:] down to flat[i * dim:]; going up the rows, a move never overwrites a
    # row that has not moved yet, and within a row each float is read before anything is written over it.
    for i in range(1, n):
        for d in range(dim):
            flat[i * dim + d] = flat[i * stride + d]


def _unpad_rows(m: np.ndarray, dim: int) -> np.ndarray:
    """Undo :func:`_aligned_rows`: float32[n, dim], C-contiguous, moved into the front of ``m``'s own buffer
    rather than copied (an atlas universe's matrices are hundreds of MB)."""
    n, stride = m.shape
    if stride == dim:
        return m
    flat = m.reshape(-1)
    _compact_rows(flat, n, stride, dim)
    return flat[: n * dim].reshape(n, dim)


@njit(**SERIAL)
def _all_finite(m):
    """True when the float32 matrix ``m`` holds no NaN or infinity; a loop that stops at the first one, without
    the matrix-sized temporary of ``np.isfinite(m).all()``."""
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if not np.isfinite(m[i, j]):
                return False
    return True


def _check_finite(w_in, w_out, epoch, epochs, learning_rate):
    """Raise :class:`DivergedError` when an epoch left NaN or infinite values in the vectors: once there, they
    spread to every row they meet, and a model saved with them cannot be used."""
    if _all_finite(w_in) and _all_finite(w_out):
        return
    raise DivergedError(
        f"training diverged in epoch {epoch + 1} of {epochs}: the vectors hold NaN or infinite values. "
        f"learning_rate={learning_rate:g} is too high for this data; lower it (the default is 0.025)"
    )


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
    sample: float = 0.0,
    seed: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    init: str | tuple[np.ndarray, np.ndarray] = "random",
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
        Negatives per centre, from the counts^``NEGATIVE_POWER`` (0.75) distribution of trained tokens, shared
        by its contexts.
    epochs : int, default 100
        Passes over all cells.
    batch_size : int, default 256
        Cells per work unit (block). Each block has its own random stream; blocks run concurrently. With
        several threads, blocks shrink to ``ceil(n_cells / (threads * settings.BLOCKS_PER_THREAD))`` cells
        when that is smaller, so that the threads' shares of the work can be balanced.
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
    sample : float or "auto", default 0
        Frequent-token subsampling threshold (word2vec's ``sample``; see :func:`keep_probabilities`); 0 keeps
        every token; ``"auto"`` thins only tokens with more than about ``2.6 * THIN_OCCURRENCES`` occurrences
        per pass (:func:`resolve_sample`; what :class:`fastembed.ScEmbed` uses).
    init : {"random", "spectral"} or (w_in, w_out), default "random"
        Initial input vectors: word2vec's uniform ``[-0.5/dim, 0.5/dim)``, the spectral warm start of
        :func:`fastembed.warmstart.spectral_init` (its time is counted in ``seconds``), or given matrices
        (float32[vocab_size, embedding_dim] each, copied) to continue training.
    progress : bool, default True
        Show a progress bar (epochs, tokens/s, learning rate): in a Jupyter notebook, or on stderr when it is a
        terminal; silent in logs, pipes and CI (see :func:`fastembed._progress.progress_bar`).

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
    DivergedError
        An epoch left NaN or infinite values in the vectors (a ``ValueError``; the learning rate is too high).
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
    resolve_sample(sample, np.zeros(1, np.int64), np.zeros(1, bool))  # checked before the data is read
    progress = check_progress(progress)
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
    table = build_alias_table(counts, NEGATIVE_POWER, mask=trained)
    t_init = time.perf_counter()
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)} or a (w_in, w_out) pair, got {init!r}")
        w_in, w_out = init_vectors(vocab_size, embedding_dim, seed)
        if init == "spectral":
            w_in = spectral_init(indptr, indices, vocab_size, embedding_dim, trained=trained, seed=seed)
    else:
        w_in, w_out = (np.array(m, dtype=np.float32, order="C") for m in init)
        if w_in.shape != (vocab_size, embedding_dim) or w_out.shape != (vocab_size, embedding_dim):
            raise ValueError(
                f"initial vectors must both have shape ({vocab_size}, {embedding_dim}), got "
                f"{w_in.shape} and {w_out.shape}"
            )
        if not (np.isfinite(w_in).all() and np.isfinite(w_out).all()):
            raise ValueError("initial vectors hold NaN or infinite values")
    w_in[~trained] = 0.0
    w_in, w_out = _aligned_rows(w_in), _aligned_rows(w_out)
    init_seconds = time.perf_counter() - t_init

    n_cells = indptr.size - 1
    if threads > 1:
        batch_size = min(batch_size, max(1, -(-n_cells // (threads * settings.BLOCKS_PER_THREAD))))
    n_blocks = -(-n_cells // batch_size)
    epoch_words = int(indptr[-1])
    words_total = float(max(epoch_words * epochs, 1))
    max_len = int(np.diff(indptr).max())
    # Cap the blocks per kernel call so long epochs still update the progress bar; with blocks handed out one at
    # a time, the barrier at the end of a call costs at most about one block per thread.
    step = max(n_blocks if threads == 1 else 64 * threads, 1)
    sample = resolve_sample(sample, counts, trained)
    keep = keep_probabilities(counts, trained, sample)
    kept_share = float(keep[trained] @ counts[trained]) / max(float(counts[trained].sum()), 1.0)
    params = _kernel_params(
        table,
        keep,
        seed=seed,
        window=window_size,
        negative=negative_samples,
        batch_size=batch_size,
        lr0=learning_rate,
        lr_min=min_learning_rate,
        words_total=words_total,
        max_len=max_len,
        dim=embedding_dim,
        add_back=threads > OVERWRITE_MAX_THREADS,
        hot_ids=_hot_rows(counts, keep, trained, negative_samples, PRIVATE_HOT_ROWS)
        if threads >= PRIVATE_HOT_MIN_THREADS
        else None,
        merge_tokens=HOT_MERGE_TOKENS // max(threads - 1, 1),
    )

    block_tokens = np.diff(indptr[np.minimum(np.arange(n_blocks + 1) * batch_size, n_cells)]).astype(np.int64)
    counter = np.zeros(1, dtype=np.int64)

    def run(epoch: int, p0: int, p1: int, order: np.ndarray, starts: np.ndarray) -> None:
        if threads == 1:
            _blocks_serial(p0, p1, order, starts, indptr, indices, w_in, w_out, params, epoch)
        else:
            counter[0] = p0
            _blocks_parallel(threads, counter, p1, order, starts, indptr, indices, w_in, w_out, params, epoch)

    bar = _progress_bar(epochs, progress)
    seconds = init_seconds
    epochs_done = 0
    try:
        with numba_threads(threads):
            # An empty range: compiles (or loads from cache) outside the timed loop.
            order, starts = block_order(seed, 0, block_tokens)
            run(0, 0, 0, order, starts)
            for epoch in range(epochs):
                t0 = time.perf_counter()
                order, starts = block_order(seed, epoch, block_tokens)
                for p0 in range(0, n_blocks, step):
                    run(epoch, p0, min(p0 + step, n_blocks), order, starts)
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
                epochs_done = epoch + 1
                _check_finite(w_in, w_out, epoch, epochs, learning_rate)
    except KeyboardInterrupt:
        # Ctrl-C lands between two kernel calls (a running numba call cannot be interrupted): what was
        # trained so far is consistent and is returned, as gensim keeps its vectors, for the caller to keep.
        pass
    finally:
        if bar is not None:
            bar.close()
    w_in, w_out = _unpad_rows(w_in, embedding_dim), _unpad_rows(w_out, embedding_dim)
    return SGNSResult(
        w_in, w_out, counts, trained, epoch_words * epochs_done, seconds, epochs_done, sample, kept_share
    )


def _progress_bar(epochs: int, progress: bool):
    return progress_bar(epochs, desc="training", unit="epoch", enabled=progress)
